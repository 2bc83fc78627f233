"""The BM25 baseline (bm25s), reported beside every dense model so that a loss to BM25 shows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

IDS = "ids.json"  # beside bm25s's own files: the id of each row, and whether it stems


class Bm25:
    """bm25s defaults (k1 1.5, b 0.75, lowercase, English stop words); optional Snowball stemmer."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], *, stem: bool = False) -> None:
        self.ids = list(ids)
        self.stem = stem
        self._stemmer = stemmer_for(stem)
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False
        )
        self._retriever.index(tokens, show_progress=False)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = True) -> Bm25:
        """What ``bm25_build.build`` wrote, memory-mapped unless the folder is temporary."""
        meta = json.loads((folder / IDS).read_text())
        out = cls.__new__(cls)
        out.ids, out.stem = list(meta["ids"]), bool(meta["stem"])
        out._stemmer = stemmer_for(out.stem)
        out._retriever = bm25s.BM25.load(str(folder), mmap=mmap, show_progress=False)
        return out

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


def stemmer_for(stem: bool) -> Any:
    if not stem:
        return None
    import Stemmer

    return Stemmer.Stemmer("english")
