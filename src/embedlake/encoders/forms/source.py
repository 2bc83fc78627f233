"""What a sentence-transformers source folder is made of, read from its JSON files (no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlake.errors import InputError

SERVING = "serving.json"
# The module pipelines an exported form reproduces: token states → pooling → (normalise).
_TRANSFORMER, _POOLING, _NORMALIZE = "Transformer", "Pooling", "Normalize"


@dataclass(frozen=True)
class Source:
    folder: Path
    dim: int
    pooling: str  # "mean" or "cls"
    normalize: bool
    max_position: int  # the longest input the transformer accepts


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path.parent}: no {path.name}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}") from None


def describe(folder: Path) -> Source:
    """The source's dimension, pooling and limits; InputError when it is not a sentence-transformers
    folder made of a transformer, a mean or CLS pooling and an optional normalisation."""
    if not folder.is_dir():
        raise InputError(f"{folder}: a source model must be a sentence-transformers folder")
    modules = _json(folder / "modules.json")
    # by class name: the dotted path moved between sentence-transformers versions
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != [_TRANSFORMER, _POOLING] or any(k != _NORMALIZE for k in kinds[2:]):
        raise InputError(
            f"{folder}: serving forms support Transformer → Pooling (→ Normalize) models; "
            f"this one is {' → '.join(kinds)}"
        )
    pooling_config = _json(folder / modules[1]["path"] / "config.json")
    # sentence-transformers < 6 writes one flag per mode; 6 writes "pooling_mode": "mean"
    mode = pooling_config.get("pooling_mode")
    if pooling_config.get("pooling_mode_mean_tokens") or mode == "mean":
        pooling = "mean"
    elif pooling_config.get("pooling_mode_cls_token") or mode == "cls":
        pooling = "cls"
    else:
        raise InputError(f"{folder}: only mean or CLS pooling can be served as a form")
    dim = pooling_config.get("word_embedding_dimension", pooling_config.get("embedding_dimension"))
    if dim is None:
        raise InputError(f"{folder}: the pooling config does not name the embedding dimension")
    config = _json(folder / "config.json")
    return Source(
        folder=folder,
        dim=int(dim),
        pooling=pooling,
        normalize=len(kinds) > 2,
        max_position=int(config.get("max_position_embeddings", 512)),
    )
