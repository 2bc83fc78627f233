"""embedlake: drop documents or a model into the lake; embedding, indexing and benchmarking follow.

The public surface is small on purpose: the CLI (``embedlake``), :class:`Workspace`, :class:`Settings`
and the exception tree. Everything else is reached through a workspace.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embedlake.errors import EmbedlakeError

if TYPE_CHECKING:
    from embedlake.config import Settings
    from embedlake.workspace import Workspace

__all__ = ["EmbedlakeError", "Settings", "Workspace", "__version__"]
__version__ = "0.1.0"

# Settings and Workspace pull pydantic, SQLAlchemy and Alembic; they load on first use (PEP 562)
# so that importing any embedlake module (the CLI's `--help` first of all) does not pay for them.
_LAZY = {"Settings": "embedlake.config", "Workspace": "embedlake.workspace"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedlake' has no attribute {name!r}")
