"""Workspaces for benchmarks: a model embedded over an ingested corpus, and builds cached on disk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedlake import Workspace
from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.batch import embed
from embedlake.encoders import Encoder
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model


def embedded(ws: Workspace, name: str) -> tuple[ModelRecord, Encoder, Any]:
    """Model ``name`` resolved (registered or fitted), loaded and run over every document: the
    record, the encoder and `embed`'s report."""
    record = resolve_model(ws, name)
    encoder = artifacts.load_encoder(ws, record)
    return record, encoder, embed(ws, record, encoder)


def cached(root: Path, marker: str, build: Callable[[Path], dict[str, Any]]) -> tuple[dict, bool]:
    """The info a finished build left in ``root / marker``, or ``build(root)`` from scratch (the
    folder emptied first) with its info written there; the second item: whether it was cached."""
    done = root / marker
    if done.is_file():
        return json.loads(done.read_text()), True
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    info = build(root)
    done.write_text(json.dumps(info, indent=2))
    return info, False
