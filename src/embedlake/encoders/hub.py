"""The one switch that keeps the Hugging Face libraries off the network.

embedlake never downloads at run time: models come from the lake, an installed package or a local
path. huggingface_hub, transformers, sentence-transformers and model2vec all fall back to the hub
when a path does not resolve locally, so every module that loads or makes a model with them calls
:func:`offline` first, and a broken folder becomes an error instead of a download.
"""

from __future__ import annotations

import os

# transformers reads its own variable besides the hub's; both, so that no library version asks
FLAGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> None:
    """Turn the hub off for this process, unless the environment already decided (a user who
    set ``HF_HUB_OFFLINE=0`` keeps it). Call it before importing the library, which may read the
    variables at import time."""
    for flag in FLAGS:
        os.environ.setdefault(flag, "1")
