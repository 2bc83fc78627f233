"""The BM25 baseline (bm25s), reported beside every dense model so that a loss to BM25 shows."""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np


class Bm25:
    """bm25s defaults (k1 1.5, b 0.75, lowercase, English stop words); optional Snowball stemmer."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], *, stem: bool = False) -> None:
        self.ids = list(ids)
        self._stemmer = None
        if stem:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english")
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False
        )
        self._retriever.index(tokens, show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        tokens = bm25s.tokenize(
            list(queries), stopwords="en", stemmer=self._stemmer, show_progress=False
        )
        k = min(k, len(self.ids))
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        out = []
        for row_d, row_s in zip(np.asarray(docs), np.asarray(scores), strict=True):
            out.append(
                [(self.ids[int(d)], float(s)) for d, s in zip(row_d, row_s, strict=True) if s > 0]
            )
        return out
