"""Vector indexes: one protocol, one module per engine (``exact.py``, ``hnsw.py``, ``pgvector.py``,
``rabitq.py``, ``rabitq_hnsw.py``).

Vectors are unit length and scored by inner product (= cosine). Ids are strings; engines keep the
string ids beside the library's integer labels. An index is saved as a folder of files in the lake
(for ``pgvector``, a manifest naming the table in the PostgreSQL catalog that holds the vectors).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from embedlake.errors import ConfigError

Matrix = npt.NDArray[np.float32]


class VectorIndex(Protocol):
    engine: str
    dim: int

    def __len__(self) -> int: ...
    def add(self, ids: Sequence[str], vectors: Matrix) -> None: ...
    def remove(self, ids: Sequence[str]) -> None: ...
    def search(
        self,
        queries: Matrix,
        k: int,
        allowed: Collection[str] | None = None,
        effort_hits: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` per query, best first; only among ``allowed`` ids when given (a filter).
        ``effort_hits`` (≤ k): how many of the hits the search effort is sized for, where the
        caller fetches the rest only as spares (the searcher's room for deleted documents), so
        that they cost no more effort than the tuning measured; default ``k``."""
        ...

    def vector(self, doc_id: str) -> Matrix | None:
        """The stored vector of ``doc_id`` (in the index's space), or None."""
        ...

    def ids(self) -> list[str]:
        """The ids in the index (removed ones left out)."""
        ...

    def save(self, folder: Path) -> None: ...
    def params(self) -> dict[str, Any]: ...


ENGINES: dict[str, str] = {
    "exact": "embedlake.index.exact:ExactIndex",
    "hnsw": "embedlake.index.hnsw:HnswIndex",
    "pgvector": "embedlake.index.pgvector:PgvectorIndex",
    "rabitq": "embedlake.index.rabitq:RabitqIndex",
    "rabitq-hnsw": "embedlake.index.rabitq_hnsw:RabitqHnswIndex",
}


def _engine_class(engine: str) -> Any:
    target = ENGINES.get(engine)
    if target is None:
        raise ConfigError(
            f"index engine {engine!r} is unknown (known: {', '.join(sorted(ENGINES))})"
        )
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def create(engine: str, dim: int, **params: Any) -> VectorIndex:
    index: VectorIndex = _engine_class(engine)(dim, **params)
    return index


def load(engine: str, folder: Path, **overrides: Any) -> VectorIndex:
    index: VectorIndex = _engine_class(engine).load(folder, **overrides)
    return index


TUNED_K = 10  # an index's effort is tuned for (and its recall measured at) this many hits


def effort_for(effort: int, k: int, effort_hits: int | None = None) -> int:
    """An HNSW candidate list for ``k`` hits from one tuned for ``TUNED_K``: the same effort per
    hit, so that a deeper search keeps about the recall the tuning measured (a list of only
    ``k`` finds noticeably fewer of the true top ``k`` once ``k`` outgrows the tuned list).
    With ``effort_hits``, the effort of that many hits, and a list long enough for ``k``."""
    hits = k if effort_hits is None else min(effort_hits, k)
    return max(effort, k, -(-effort * hits // TUNED_K))


def check_vectors(vectors: Any, dim: int) -> Matrix:
    """A C-contiguous float32 matrix of the right width whose values are finite and whose rows'
    squared norms are within float32, or InputError."""
    from embedlake.errors import InputError

    if isinstance(vectors, np.ndarray) and vectors.dtype == np.float32:
        array = vectors
    else:
        with np.errstate(over="ignore"):  # a value past float32's range is named below
            array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise InputError(f"vectors must have {dim} dimensions, got shape {array.shape}")
    array = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    # one BLAS dot over every value (every search runs this): finite means every value is
    # finite and no row's squared norm (what normalising, RaBitQ's codes and L2 distances
    # compute) overflows float32; only if it is not are the rows looked at one by one
    if not math.isfinite(np.vdot(array, array)):
        if not np.isfinite(array).all():
            if np.isfinite(np.asarray(vectors, dtype=np.float64)).all():
                raise InputError("vectors hold values beyond float32's range (±3.4e38)")
            raise InputError("vectors contain NaN or infinite values")
        if not np.isfinite(np.einsum("ij,ij->i", array, array)).all():
            raise InputError("vectors with values too large: their squared norm overflows float32")
    return array


def top_k(
    queries: Matrix, vectors: npt.NDArray[np.float32], ids: Sequence[str], k: int
) -> list[list[tuple[str, float]]]:
    """Exact top ``k`` by inner product of each query against every row of ``vectors``."""
    n = len(ids)
    if n == 0:
        return [[] for _ in range(len(queries))]
    scores = queries @ np.asarray(vectors).T
    k = min(k, n)
    top = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < n
        else np.tile(np.arange(n), (len(queries), 1))
    )
    out = []
    for row, cand in zip(scores, top, strict=True):
        order = cand[np.argsort(-row[cand], kind="stable")]
        out.append([(ids[i], float(row[i])) for i in order])
    return out
