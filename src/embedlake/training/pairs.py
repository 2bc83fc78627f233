"""Training pairs: (query, relevant document) from a dataset's judgments, split so that the queries
the gate evaluates on are never trained on; or self-supervised from the corpus alone.

Splits, in order of preference:
- the collection's own: ``qrels/train.tsv`` trains, ``qrels/dev.tsv`` (if present) chooses the epoch,
  and the gate evaluates on every query of ``qrels/test.tsv``;
- a seeded split of the test judgments when the collection has nothing else: half the queries are
  held out for the gate, and a share of the other half (``dev_share``) chooses the epoch.
Either way the manifest records which queries went where (``train_queries``, ``dev_queries``,
``heldout_queries``), and the gate leaves out every query that training saw.

Self-supervised, with no judgments: ``self:title`` (a title against its document's text) and
``self:span`` (a passage of a document against the rest of it, the span cut out), so that a corpus
with no queries can still be adapted.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedlake.errors import InputError
from embedlake.ingest.datasets import Dataset, load_folder
from embedlake.workspace import Workspace

SELF_LIMIT = 20_000  # self-supervised pairs drawn at most (seeded sample of the corpus)
SPAN_WORDS = (16, 48)  # the span of self:span, in words (at least a sentence, at most a paragraph)
MIN_SPAN_DOC_WORDS = 64  # a document shorter than this gives no span pair (too little "rest")


@dataclass
class Pairs:
    anchors: list[str]
    positives: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # goes into the manifest
    positive_ids: list[str] = field(default_factory=list)  # the document of each positive
    judged: dict[str, set[str]] = field(default_factory=dict)  # anchor → every relevant doc id
    dev: Dataset | None = None  # queries that choose the epoch (never trained or gated on)

    def __len__(self) -> int:
        return len(self.anchors)


def from_spec(
    ws: Workspace, spec: str, *, train_share: float = 0.5, dev_share: float = 0.2, seed: int = 0
) -> Pairs:
    kind, _, arg = spec.partition(":")
    if kind == "qrels" and arg:
        return from_qrels(ws, Path(arg), train_share=train_share, dev_share=dev_share, seed=seed)
    if kind == "self" and arg in ("title", ""):
        return from_titles(ws, seed=seed)
    if kind == "self" and arg == "span":
        return from_spans(ws, seed=seed)
    raise InputError(f"--pairs {spec!r}: use qrels:PATH (a BEIR folder), self:title or self:span")


def from_qrels(
    ws: Workspace, path: Path, *, train_share: float, dev_share: float, seed: int
) -> Pairs:
    name = path.resolve().name
    try:
        prefix = json.loads(ws.lake.get(f"benchmarks/{name}/dataset.json")).get("id_prefix", "")
    except Exception:
        prefix = ""
    test = load_folder(path, id_prefix=prefix)
    if (path / "qrels" / "train.tsv").is_file():
        train = load_folder(path, "train", prefix)
        dev = load_folder(path, "dev", prefix) if (path / "qrels" / "dev.tsv").is_file() else None
        split = "collection"
        seen = set(train.queries) | (set(dev.queries) if dev else set())
        held = sorted(set(test.queries) - seen)  # a query in two splits is never gated on
    else:
        train, dev, held = _seeded_split(test, train_share, dev_share, seed)
        split = "seeded"
    if not train.queries or not held:
        raise InputError(f"{path}: {len(test.queries)} judged queries are too few to split")
    pairs = _judged_pairs(ws, path, train)
    pairs.dev = dev
    pairs.info = {
        "pairs": f"qrels:{name}",
        "dataset": name,
        "split": split,
        "seed": seed,
        "n_pairs": len(pairs),
        "train_queries": sorted(train.queries),
        "dev_queries": sorted(dev.queries) if dev else [],
        "heldout_queries": held,
        "pairs_hash": _hash(pairs.anchors, pairs.positives),
    }
    return pairs


def _seeded_split(
    test: Dataset, train_share: float, dev_share: float, seed: int
) -> tuple[Dataset, Dataset | None, list[str]]:
    qids = sorted(test.queries)
    random.Random(seed).shuffle(qids)
    cut = round(len(qids) * train_share)
    learn, held = qids[:cut], sorted(qids[cut:])
    n_dev = round(len(learn) * dev_share) if len(learn) >= 5 else 0
    dev_ids, train_ids = learn[:n_dev], learn[n_dev:]
    return test.only(train_ids), test.only(dev_ids) if dev_ids else None, held


def _judged_pairs(ws: Workspace, path: Path, train: Dataset) -> Pairs:
    relevant = {q: {d for d, g in train.qrels[q].items() if g > 0} for q in train.queries}
    docs = ws.catalog.documents.get_many(sorted({d for ds in relevant.values() for d in ds}))
    pairs = Pairs([], [])
    for q in sorted(train.queries):
        text = train.queries[q]
        pairs.judged.setdefault(text, set()).update(relevant[q])
        for doc_id in sorted(relevant[q]):
            if doc_id in docs:
                pairs.anchors.append(text)
                pairs.positives.append(docs[doc_id].full_text)
                pairs.positive_ids.append(doc_id)
    if not pairs.anchors:
        raise InputError(
            f"{path}: no judged document of the training queries is in this "
            f"workspace; ingest the collection first"
        )
    return pairs


def from_titles(ws: Workspace, *, seed: int, limit: int = SELF_LIMIT) -> Pairs:
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
    pairs = Pairs(
        [d.title for d in docs], [d.text for d in docs], positive_ids=[d.id for d in docs]
    )
    pairs.judged = {d.title: {d.id} for d in docs}
    pairs.info = {"pairs": "self:title", "seed": seed, "n_pairs": len(pairs)}
    pairs.info["pairs_hash"] = _hash(pairs.anchors, pairs.positives)
    return pairs


def from_spans(ws: Workspace, *, seed: int, limit: int = SELF_LIMIT) -> Pairs:
    """A span of each document (whole sentences where it can, SPAN_WORDS long) against the rest
    of the document with the span removed: the model learns to find a document by what it says
    anywhere in it, not by an exact repeat of the words."""
    rng = random.Random(seed)
    docs = [
        d for d in ws.catalog.documents.iter_live() if len(d.text.split()) >= MIN_SPAN_DOC_WORDS
    ]
    if len(docs) < 10:
        raise InputError(f"self:span needs at least 10 documents of {MIN_SPAN_DOC_WORDS}+ words")
    rng.shuffle(docs)
    pairs = Pairs([], [])
    for doc in docs[:limit]:
        start, end = span(doc.text, rng)
        rest = (doc.text[:start] + " " + doc.text[end:]).strip()
        pairs.anchors.append(doc.text[start:end].strip())
        pairs.positives.append(f"{doc.title}\n{rest}" if doc.title else rest)
        pairs.positive_ids.append(doc.id)
        pairs.judged[pairs.anchors[-1]] = {doc.id}
    pairs.info = {"pairs": "self:span", "seed": seed, "n_pairs": len(pairs)}
    pairs.info["pairs_hash"] = _hash(pairs.anchors, pairs.positives)
    return pairs


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def span(text: str, rng: random.Random) -> tuple[int, int]:
    """Character offsets of a span of SPAN_WORDS words: consecutive whole sentences from a random
    one, or a window of words where the sentences are too long or too short."""
    low, high = SPAN_WORDS
    starts = [0] + [m.end() for m in _SENTENCE.finditer(text)]
    order = list(range(len(starts)))
    rng.shuffle(order)
    for i in order[:8]:
        end = i
        while end + 1 < len(starts) and len(text[starts[i] : starts[end + 1]].split()) < low:
            end += 1
        stop = starts[end + 1] if end + 1 < len(starts) else len(text)
        if low <= len(text[starts[i] : stop].split()) <= high and (starts[i], stop) != (
            0,
            len(text),
        ):
            return starts[i], stop
    words = [m.span() for m in re.finditer(r"\S+", text)]
    n = rng.randint(low, high)
    first = rng.randrange(0, len(words) - n)
    return words[first][0], words[first + n - 1][1]


def _hash(anchors: list[str], positives: list[str]) -> str:
    return hashlib.sha256(json.dumps([anchors, positives]).encode()).hexdigest()
