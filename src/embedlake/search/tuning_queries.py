"""Query-like vectors for tuning an index's search effort (``index.tune``): a short run of words
from each held-back passage, embedded as a query is.

A document's own vector is an easy query (it lies among the documents, often beside a near copy of
itself); a span of a few words lies between them as a real query does. Measured with the real
queries of the judged test collections (bench/ann_tuning.py, docs/benchmarks.md section 17): over
collections ingested twice, held-back document vectors chose ``ef_search`` 10 for a 0.95 target
and the real queries got 0.857; with these spans the tuning chose 48 and they got 0.978.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from embedlake.catalog.documents import Document
from embedlake.catalog.registry import ModelRecord
from embedlake.index import Matrix
from embedlake.index.keys import doc_of, span_of
from embedlake.index.tune import QueriesFor
from embedlake.models import artifacts
from embedlake.reduce.pca import PcaReducer
from embedlake.workspace import Workspace

SPAN_WORDS = (8, 32)  # a short query to a sentence-long one, uniformly (bench/ann_tuning.py)
# documents read at a time (each up to ingest's max_document_bytes), and the characters of a long
# passage a span is drawn from: ample for 32 words, and a megabyte document is never split whole
_BATCH, _WINDOW = 64, 4_000


def span_queries(
    ws: Workspace,
    model: ModelRecord,
    reducer: PcaReducer | None = None,
    seed: int = 0,
    words: tuple[int, int] = SPAN_WORDS,
) -> QueriesFor:
    """A maker of one query-like vector per held-back passage key (the model's, reduced by the
    release's PCA when it backs the index); the encoder is loaded only when it is called."""

    def make(keys: Sequence[str]) -> Matrix:
        rng = random.Random(seed)
        texts: list[str] = []
        for first in range(0, len(keys), _BATCH):
            chunk = keys[first : first + _BATCH]
            docs = ws.catalog.documents.get_many(sorted({doc_of(k) for k in chunk}))
            texts += [span_text(docs.get(doc_of(key)), key, rng, words) for key in chunk]
        rows = [n for n, text in enumerate(texts) if text]
        out = np.zeros((len(keys), model.dim if reducer is None else reducer.dim), np.float32)
        if rows:
            encoder = artifacts.load_encoder(ws, model)
            batch = ws.settings.embed.batch_size
            vectors = encoder.encode([texts[n] for n in rows], batch_size=batch)
            if reducer is not None:  # only real rows: PCA would move a zero row off zero
                vectors = reducer.transform(vectors)
            out[rows] = vectors
        return out  # a zero row (no text, or words the model never saw) is dropped by the tuning

    return make


def span_text(
    doc: Document | None, key: str, rng: random.Random, words: tuple[int, int] = SPAN_WORDS
) -> str:
    """A run of ``words`` words, as many as a uniform draw between its bounds (fewer in a
    shorter passage), from the passage ``key`` of ``doc``; "" for a document gone since it was
    embedded."""
    if doc is None:
        return ""
    span = span_of(key)
    text = doc.full_text if span is None else doc.text[span[0] : span[1]]
    found = text.split() if len(text) <= _WINDOW else _window_words(text, rng)
    size = min(rng.randint(*words), len(found))
    first = rng.randint(0, len(found) - size)
    return " ".join(found[first : first + size])


def _window_words(text: str, rng: random.Random) -> list[str]:
    """The whole words of a random ``_WINDOW`` characters of a long ``text`` (the words cut at
    either edge left out)."""
    start = rng.randrange(len(text) - _WINDOW + 1)
    return text[start : start + _WINDOW].split()[1:-1]
