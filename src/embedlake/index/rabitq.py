"""Index engine ``rabitq``: compressed codes in memory, exact scores from fp32 vectors on disk.

faiss ``IndexIVFRaBitQ``: the vectors are clustered into ``nlist`` lists (k-means on the first
vectors added) and each is kept as a RaBitQ code (Gao and Long 2024: one bit a dimension and two
correction factors, 56 bytes for 384 dimensions against 1,536 in fp32 and about 1,800 for an HNSW
graph over fp32). A search visits the ``nprobe`` lists nearest the query, ranks their codes by
RaBitQ's unbiased estimate of the inner product, and re-scores the best k × ``rescore`` with their
fp32 vectors, which a loaded index memory-maps, so that only those rows are read. ``nprobe`` is the
knob the build tunes to the recall target (``tune.py``), per hit like HNSW's ``ef_search``.

Tombstones are kept out by a selector until the next save, which leaves them out. A filter that
keeps few vectors is scanned exactly over its rows (as ``hnsw`` does); a broad one is searched with
a selector; a query that comes back short (the lists it visited hold fewer than k of the rows it
may return) is answered exactly, so k hits come back whenever k exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from embedlake.errors import InputError
from embedlake.index import TUNED_K, Matrix, check_vectors
from embedlake.index import quantize as q

OPTIONS = "rabitq.json"
_TRAIN_PER_LIST = 64  # k-means samples per list (faiss warns under 39)
_SCAN_SHARE, _SCAN_MIN = 0.05, 20_000  # a filter this narrow is scanned exactly (as hnsw.py)


def lists_for(n: int) -> int:
    """Lists for ``n`` vectors: about 4·√n (faiss's guideline for IVF), with enough vectors for
    each to train on."""
    return max(1, min(round(4 * math.sqrt(n)), n // _TRAIN_PER_LIST))


class RabitqIndex:
    engine = "rabitq"

    def __init__(
        self, dim: int, nlist: int = 0, nprobe: int = 16, rescore: int = q.DEFAULT_RESCORE, **_: Any
    ) -> None:
        if nlist < 0 or nprobe < 1 or rescore < 1:
            raise InputError(
                f"rabitq index options nlist={nlist} (0: from the first vectors added), "
                f"nprobe={nprobe} and rescore={rescore}: nlist ≥ 0, nprobe and rescore ≥ 1"
            )
        self.dim, self.nlist, self.nprobe, self.rescore = dim, nlist, nprobe, rescore
        self._index: Any = None  # made, and its lists trained, at the first add
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._removed: set[int] = set()
        self._selector: Any = None
        self._vectors: Any = np.empty((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def codes_nbytes(self) -> int:
        """Bytes of codes and labels held in memory (the fp32 vectors are on disk once saved)."""
        return 0 if self._index is None else int(self._index.ntotal) * (self._index.code_size + 8)

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        self.remove([i for i in ids if i in self._pos])  # re-adding an id replaces it
        if self._index is None:
            self._index = self._trained(vectors)
        start = len(self._ids)
        self._index.add_with_ids(vectors, np.arange(start, start + len(ids), dtype=np.int64))
        self._ids.extend(ids)
        self._pos.update({doc_id: start + n for n, doc_id in enumerate(ids)})
        self._vectors = np.vstack([self._vectors, vectors]) if start else vectors.copy()

    def _trained(self, vectors: Matrix) -> Any:
        nlist = self.nlist or lists_for(len(vectors))
        index = faiss.index_factory(self.dim, f"IVF{nlist},RaBitQ", faiss.METRIC_INNER_PRODUCT)
        want = min(len(vectors), nlist * 256)  # faiss samples 256 a list at most itself
        rows = np.random.default_rng(0).choice(len(vectors), want, replace=False)
        index.train(vectors[np.sort(rows)])
        self.nlist = nlist
        return index

    def remove(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            pos = self._pos.pop(doc_id, None)
            if pos is not None:
                self._removed.add(pos)
                self._selector = None

    def search(
        self, queries: Matrix, k: int, allowed: Collection[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        queries = check_vectors(queries, self.dim)
        rows: Any = None  # the rows a filter keeps (None: every live row)
        if allowed is not None:
            rows = np.array(sorted(self._pos[i] for i in allowed if i in self._pos), np.int64)
        count = len(self._pos) if rows is None else len(rows)
        k = min(k, count)
        if k <= 0:
            return [[] for _ in range(len(queries))]
        if rows is not None and len(rows) <= max(_SCAN_MIN, _SCAN_SHARE * len(self._ids)):
            return self._hits(*self._exact(queries, k, rows))
        params = faiss.SearchParametersIVF()
        params.nprobe = max(self.nprobe, -(-self.nprobe * k // TUNED_K))  # the same per hit
        selector = self._removed_selector() if rows is None else faiss.IDSelectorBatch(rows)
        if selector is not None:
            params.sel = selector  # referenced here while faiss uses it
        _, candidates = self._index.search(queries, min(k * self.rescore, count), params=params)
        scores, found = q.rescore(queries, self._vectors, candidates, k)
        short = np.flatnonzero((found >= 0).sum(axis=1) < k)
        if len(short):  # the visited lists held fewer than k: answer those exactly
            scores[short], found[short] = self._exact(queries[short], k, rows)
        return self._hits(scores, found)

    def _removed_selector(self) -> Any:
        """Every label but the removed ones; None when none is (kept until the next removal)."""
        if not self._removed:
            return None
        if self._selector is None:
            self._selector_ids = np.fromiter(self._removed, dtype=np.int64)
            self._selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._selector_ids))
        return self._selector

    def _exact(self, queries: Matrix, k: int, rows: Any) -> tuple[q.Scores, q.Rows]:
        """Exact top ``k`` over ``rows`` (None: every live row); ``k`` ≤ their number."""
        if rows is None:
            live = None
            if self._removed:
                live = np.ones(len(self._ids), dtype=bool)
                live[list(self._removed)] = False
            return q.scan(queries, self._vectors, k, live)
        scores, found = q.scan(queries, np.asarray(self._vectors[rows]), k)
        return scores, np.where(found >= 0, rows[np.maximum(found, 0)], -1)

    def _hits(self, scores: Any, rows: Any) -> list[list[tuple[str, float]]]:
        ids = self._ids
        return [
            [(ids[r], s) for r, s in zip(row_r, row_s, strict=True) if r >= 0]
            for row_r, row_s in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def ids(self) -> list[str]:
        return list(self._pos)

    def vector(self, doc_id: str) -> Matrix | None:
        pos = self._pos.get(doc_id)
        return None if pos is None else np.array(self._vectors[pos], dtype=np.float32)

    def save(self, folder: Path) -> None:
        if self._removed:
            self._compact()
        if self._index is not None:
            faiss.write_index(self._index, str(folder / "index.faiss"))
        np.save(folder / "vectors.npy", np.asarray(self._vectors, dtype=np.float32))
        (folder / "ids.json").write_text(json.dumps(self._ids), encoding="utf-8")
        (folder / OPTIONS).write_text(json.dumps(self.params()), encoding="utf-8")

    def _compact(self) -> None:
        """Leave the removed rows out: the live ones renumbered, coded again into the same lists."""
        keep = np.array(sorted(self._pos.values()), dtype=np.int64)
        vectors = np.asarray(self._vectors[keep], dtype=np.float32)
        index = faiss.clone_index(self._index)
        index.reset()  # the lists' centres stay: the codes are made again, no k-means
        index.add_with_ids(vectors, np.arange(len(keep), dtype=np.int64))
        self._ids = [self._ids[r] for r in keep.tolist()]
        self._pos = {doc_id: n for n, doc_id in enumerate(self._ids)}
        self._removed, self._selector, self._index, self._vectors = set(), None, index, vectors

    def params(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "rescore": self.rescore}

    @classmethod
    def load(
        cls, folder: Path, nprobe: int | None = None, rescore: int | None = None, **_: Any
    ) -> RabitqIndex:
        """``nprobe`` and ``rescore`` override the saved ones (the lists are the saved ones)."""
        saved = json.loads((folder / OPTIONS).read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # paged in as re-scored
        index = cls(
            int(vectors.shape[1]),
            int(saved["nlist"]),
            nprobe or int(saved["nprobe"]),
            rescore or int(saved["rescore"]),
        )
        if (folder / "index.faiss").is_file():  # read whole: the codes are what stays in memory
            index._index = faiss.read_index(str(folder / "index.faiss"))
        index._ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        index._pos = {doc_id: n for n, doc_id in enumerate(index._ids)}
        index._vectors = vectors
        return index
