"""Training pairs: (query, relevant document) from a dataset's judgments, split so that the queries
the gate evaluates on are never trained on; or self-supervised (title → body) from the corpus."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedlake.errors import InputError
from embedlake.ingest.datasets import load_folder
from embedlake.workspace import Workspace


@dataclass
class Pairs:
    anchors: list[str]
    positives: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # goes into the manifest

    def __len__(self) -> int:
        return len(self.anchors)


def from_spec(ws: Workspace, spec: str, *, train_share: float = 0.5, seed: int = 0) -> Pairs:
    kind, _, arg = spec.partition(":")
    if kind == "qrels" and arg:
        return from_qrels(ws, Path(arg), train_share=train_share, seed=seed)
    if kind == "self" and arg in ("title", ""):
        return from_titles(ws, seed=seed)
    raise InputError(f"--pairs {spec!r}: use qrels:PATH (a BEIR folder) or self:title")


def from_qrels(ws: Workspace, path: Path, *, train_share: float, seed: int) -> Pairs:
    name = path.resolve().name
    try:
        prefix = json.loads(ws.lake.get(f"benchmarks/{name}/dataset.json")).get("id_prefix", "")
    except Exception:
        prefix = ""
    dataset = load_folder(path, id_prefix=prefix)
    qids = sorted(dataset.queries)
    random.Random(seed).shuffle(qids)
    cut = round(len(qids) * train_share)
    train, held = sorted(qids[:cut]), sorted(qids[cut:])
    if not train or not held:
        raise InputError(f"{path}: {len(qids)} judged queries are too few to split")
    docs = ws.catalog.documents.get_many(sorted({d for q in train for d in dataset.qrels[q]}))
    anchors, positives = [], []
    for q in train:
        for doc_id, grade in sorted(dataset.qrels[q].items()):
            if grade > 0 and doc_id in docs:
                anchors.append(dataset.queries[q])
                positives.append(docs[doc_id].full_text)
    if not anchors:
        raise InputError(
            f"{path}: no judged document of the training queries is in this "
            f"workspace; ingest the collection first"
        )
    return Pairs(
        anchors,
        positives,
        {
            "pairs": f"qrels:{name}",
            "dataset": name,
            "seed": seed,
            "n_pairs": len(anchors),
            "train_queries": train,
            "heldout_queries": held,
            "pairs_hash": _hash(anchors, positives),
        },
    )


def from_titles(ws: Workspace, *, seed: int, limit: int = 20_000) -> Pairs:
    docs = [
        d
        for d in ws.catalog.documents.iter_live()
        if d.title.strip()
        and d.text.strip()
        and d.title.strip() != d.text.strip()[: len(d.title.strip())]
    ]
    if len(docs) < 10:
        raise InputError(
            "self:title needs at least 10 documents whose title differs from the "
            "start of their text"
        )
    random.Random(seed).shuffle(docs)
    docs = docs[:limit]
    anchors = [d.title for d in docs]
    positives = [d.text for d in docs]
    return Pairs(
        anchors,
        positives,
        {
            "pairs": "self:title",
            "seed": seed,
            "n_pairs": len(anchors),
            "pairs_hash": _hash(anchors, positives),
        },
    )


def _hash(anchors: list[str], positives: list[str]) -> str:
    return hashlib.sha256(json.dumps([anchors, positives]).encode()).hexdigest()
