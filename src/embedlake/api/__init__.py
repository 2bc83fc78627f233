"""The HTTP API: embedding, nearest neighbours, documents, releases; keys, metrics, hot swap.

``create_app(ws, role)`` builds it; ``embedlake serve`` runs it under uvicorn.
"""

from embedlake.api.app import create_app

__all__ = ["create_app"]
