"""Encoder kind ``model2vec``: static token embeddings, averaged (model2vec's ``StaticModel``).

No transformer runs at query time: a text's vector is the mean of its tokens' vectors, so it encodes
tens of thousands of texts a second on one core. The vectors come from another, much weaker model
than the transformer they were distilled from: a fast first stage or a fallback, not a copy.
The base ``model2vec`` install (numpy, safetensors, tokenizers) is all this needs; no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.encoders import TokenWindow, Vectors, counting_tokenizer, normalise
from embedlake.encoders.hub import offline
from embedlake.errors import InputError

KIND = "model2vec"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
SERVING = "serving.json"


class StaticEncoder:
    kind = KIND

    def __init__(self, folder: Path, *, max_seq_length: int | None = None, **_: Any) -> None:
        # model2vec falls back to the Hugging Face hub when a path is not a complete local model:
        # check the files first, so that a broken folder is an error here and never a download.
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise InputError(f"{folder}: not a model2vec folder, {', '.join(missing)} missing")
        offline()
        from model2vec import StaticModel

        try:
            self.model = StaticModel.from_pretrained(folder, force_download=False)
        except Exception as exc:  # safetensors, tokenizers and JSON errors share no base class
            raise InputError(f"{folder}: not a loadable model2vec model: {exc}") from None
        self.max_length = max_seq_length or _serving(folder).get("max_seq_length", 512)
        self.dim = int(self.model.dim)
        self._window: TokenWindow | None = None

    def token_window(self) -> TokenWindow:
        if self._window is None:
            tokenizer = counting_tokenizer(self.model.tokenizer)
            self._window = TokenWindow(tokenizer, int(self.max_length))
        return self._window

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        # batch_size is the transformer kinds' knob; a static model is fastest with big batches,
        # and in-process (model2vec would fork worker processes for large inputs otherwise)
        out = self.model.encode(
            list(texts), max_length=self.max_length, batch_size=1024, use_multiprocessing=False
        )
        return normalise(out)


def _serving(folder: Path) -> dict[str, Any]:
    path = folder / SERVING
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}") from None
    return raw if isinstance(raw, dict) else {}


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> StaticEncoder:
    return StaticEncoder(folder, **options)
