"""Train a model and write it into the lake (``models/<name>/<version>/``), unregistered: its
manifest's arrival triggers register-model → build-release → gate → publish."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from embedlake.encoders import lsa, sentence_transformers
from embedlake.errors import InputError
from embedlake.models import artifacts
from embedlake.models.resolve import BUILTIN_MINILM, fitted_lsa
from embedlake.training.pairs import from_spec
from embedlake.workspace import Workspace


def train(
    ws: Workspace,
    *,
    name: str,
    kind: str = sentence_transformers.KIND,
    base: str = BUILTIN_MINILM,
    pairs: str | None = None,
    seed: int = 0,
    epochs: int = 1,
    batch_size: int = 32,
    components: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Returns the model's lake prefix and manifest."""
    artifacts.check_name(name)
    if kind == lsa.KIND:
        with fitted_lsa(ws, components, seed) as (folder, extra):
            return artifacts.write_folder(ws, folder, name=name, kind=lsa.KIND, extra=extra)
    if kind != sentence_transformers.KIND:
        raise InputError(f"unknown model kind {kind!r}: lsa or sentence-transformers")
    if pairs is None:
        raise InputError("fine-tuning needs --pairs (qrels:PATH or self:title)")
    base_folder = _base_folder(ws, base)
    training_pairs = from_spec(ws, pairs, seed=seed)
    from embedlake.training.finetune import finetune

    with tempfile.TemporaryDirectory() as tmp:
        params = finetune(
            base_folder,
            training_pairs,
            Path(tmp),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            max_seq_length=ws.settings.embed.max_seq_length,
            device=ws.settings.embed.device,
        )
        model = Path(tmp) / "model"
        return artifacts.write_folder(
            ws,
            model,
            name=name,
            kind=sentence_transformers.KIND,
            extra={
                "base": base,
                "params": params,
                "training_data": {
                    **training_pairs.info,
                    "corpus_hash": ws.catalog.documents.corpus_hash(),
                },
            },
            options={
                "device": ws.settings.embed.device,
                "max_seq_length": ws.settings.embed.max_seq_length,
            },
        )


def _base_folder(ws: Workspace, base: str) -> Path:
    if base == BUILTIN_MINILM:
        return sentence_transformers.builtin_path()
    path = Path(base)
    if path.is_dir():
        return path
    record = ws.catalog.registry.model(base)
    if record.kind != sentence_transformers.KIND:
        raise InputError(
            f"base model {record.ref} is {record.kind}; fine-tuning needs a "
            f"sentence-transformers model"
        )
    artifacts.load_encoder(ws, record)  # verified before training on it
    return artifacts.materialise(ws, record)
