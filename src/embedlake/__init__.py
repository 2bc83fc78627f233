"""embedlake: drop documents or a model into the lake; embedding, indexing and benchmarking follow.

The public surface is small on purpose: the CLI (``embedlake``), :class:`Workspace`, :class:`Settings`
and the exception tree. Everything else is reached through a workspace.
"""

from embedlake.config import Settings
from embedlake.errors import EmbedlakeError
from embedlake.workspace import Workspace

__all__ = ["EmbedlakeError", "Settings", "Workspace", "__version__"]
__version__ = "0.1.0"
