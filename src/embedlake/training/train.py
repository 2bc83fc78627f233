"""Train a model and write it into the lake (``models/<name>/<version>/``), unregistered: its
manifest's arrival triggers register-model → build-release → gate → publish."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from embedlake.encoders import Encoder, lsa, sentence_transformers
from embedlake.errors import InputError
from embedlake.ingest.datasets import Dataset
from embedlake.models import artifacts
from embedlake.models.resolve import BUILTIN_MINILM, fitted_lsa
from embedlake.training.finetune import DevSet, Recipe, finetune
from embedlake.training.negatives import Mining, corpus_for, mine
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
    epochs: int | None = None,
    batch_size: int | None = None,
    components: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Returns the model's lake prefix and manifest. ``epochs`` and ``batch_size`` override
    ``[training]``, which gives everything else (loss, hard negatives, dev share)."""
    artifacts.check_name(name)
    if kind == lsa.KIND:
        with fitted_lsa(ws, components, seed) as (folder, extra):
            return artifacts.write_folder(ws, folder, name=name, kind=lsa.KIND, extra=extra)
    if kind != sentence_transformers.KIND:
        raise InputError(f"unknown model kind {kind!r}: lsa or sentence-transformers")
    if pairs is None:
        raise InputError("fine-tuning needs --pairs (qrels:PATH, self:title or self:span)")
    settings = ws.settings.training
    recipe = Recipe(
        epochs=epochs or settings.epochs,
        batch_size=batch_size or settings.batch_size,
        learning_rate=settings.learning_rate,
        loss=settings.loss,
        seed=seed,
    )
    base_folder = _base_folder(ws, base)
    training_pairs = from_spec(ws, pairs, seed=seed, dev_share=settings.dev_share)
    wanted = _texts(ws, set(training_pairs.positive_ids) | _judged(training_pairs.dev))
    live = ((d.id, d.full_text) for d in ws.catalog.documents.iter_live())
    corpus = corpus_for(wanted, live, settings.mining_corpus, seed)
    negatives, mined = None, None
    if settings.hard_negatives:
        first, last = settings.negative_ranks
        mining = Mining(
            count=settings.hard_negatives,
            first=first,
            last=last,
            margin=settings.negative_margin,
            sources=tuple(settings.negative_sources),
            seed=seed,
        )
        negatives, mined = mine(
            training_pairs,
            corpus,
            _live_encoder(ws, base_folder),
            mining,
            batch_size=ws.settings.embed.batch_size,
        )
    dev = None if training_pairs.dev is None else DevSet(training_pairs.dev, corpus)
    with tempfile.TemporaryDirectory() as tmp:
        params = finetune(
            base_folder,
            training_pairs,
            Path(tmp),
            recipe=recipe,
            negatives=negatives,
            dev=dev,
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
                    "hard_negatives": mined,
                    "corpus_hash": ws.catalog.documents.corpus_hash(),
                },
            },
            options={
                "device": ws.settings.embed.device,
                "max_seq_length": ws.settings.embed.max_seq_length,
            },
        )


def _judged(dev: Dataset | None) -> set[str]:
    return set() if dev is None else {d for rel in dev.qrels.values() for d, g in rel.items() if g}


def _texts(ws: Workspace, ids: set[str]) -> dict[str, str]:
    docs = ws.catalog.documents.get_many(sorted(ids))
    return {doc_id: doc.full_text for doc_id, doc in docs.items()}


def _live_encoder(ws: Workspace, base_folder: Path) -> Encoder:
    """The model hard negatives are mined with: the live release's (whatever its kind), or the
    model being fine-tuned when nothing is live yet."""
    live = ws.catalog.releases.alias(ws.settings.gate.alias)
    if live is not None:
        release = ws.catalog.releases.get(live)
        return artifacts.load_encoder(ws, ws.catalog.registry.model_by_id(release.model_id))
    return sentence_transformers.SentenceTransformerEncoder(
        base_folder, device=ws.settings.embed.device
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
