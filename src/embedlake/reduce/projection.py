"""The 2D map of a release: UMAP (umap-learn) on PCA-reduced vectors, or PCA alone.

Fitted once per release on at most ``fit_sample`` points (seeded). PCA, being linear, then
projects every point; with UMAP the other points, and documents that arrive later, are *placed*:
each at the weighted mean of the map positions of its nearest fitted neighbours, with UMAP's own
membership weights ``exp(-(d - d_nearest) / sigma)``. This is how umap-learn's ``transform``
initialises new points; we stop there (no optimisation epochs) so that placing needs only the
stored coordinates and a nearest-neighbour search, not a pickled UMAP model (see
docs/decisions/0008-map-projection.md, with its measured cost in trustworthiness).

Coordinates are centred and scaled into [-1, 1] (aspect kept), ready for WebGL. A projection is
stored in the lake as ``coords.parquet`` (id, x, y), ``meta.json`` and, with its regions' labels
(reduce/topics.py), ``topics.json`` under the release's prefix.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.config import MapSettings
from embedlake.errors import InputError, NotFound
from embedlake.lake import Lake

log = logging.getLogger(__name__)

Coords = npt.NDArray[np.float32]
# (queries, k) → (rows, distances), each (queries, k): the rows of the fitted coordinates nearest
# each query and their cosine distances, nearest first; a row of -1 where fewer than k were found
Neighbours = Callable[[np.ndarray, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


@dataclass
class Projection:
    ids: list[str]
    coords: Coords  # (n, 2) in [-1, 1]
    meta: dict[str, Any] = field(default_factory=dict)
    # labels of the map's regions (reduce/topics.py); empty for maps fitted before them
    topics: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, lake: Lake, prefix: str) -> None:
        table = pa.table(
            {
                "id": pa.array(self.ids, pa.string()),
                "x": pa.array(self.coords[:, 0], pa.float32()),
                "y": pa.array(self.coords[:, 1], pa.float32()),
            }
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        lake.put(f"{prefix}/projection/coords.parquet", buf.getvalue())
        lake.put(f"{prefix}/projection/meta.json", json.dumps(self.meta, indent=2).encode())
        if self.topics:
            lake.put(f"{prefix}/projection/topics.json", json.dumps(self.topics).encode())

    @classmethod
    def load(cls, lake: Lake, prefix: str) -> Projection:
        key = f"{prefix}/projection/coords.parquet"
        if not lake.exists(key):
            raise NotFound(f"no map under {prefix}/: run `embedlake map` for this release")
        table = pq.read_table(io.BytesIO(lake.get(key)))
        coords = np.stack(
            [table.column("x").to_numpy(), table.column("y").to_numpy()], axis=1
        ).astype(np.float32)
        meta = json.loads(lake.get(f"{prefix}/projection/meta.json"))
        topics_key = f"{prefix}/projection/topics.json"
        topics = json.loads(lake.get(topics_key)) if lake.exists(topics_key) else {}
        return cls(table.column("id").to_pylist(), coords, meta, topics)


def fit(ids: Sequence[str], vectors: np.ndarray, settings: MapSettings) -> Projection:
    """Fit the map of ``vectors`` (already PCA-reduced by the caller)."""
    if len(ids) != len(vectors):
        raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(ids) < 3:
        raise InputError(f"a map needs at least 3 documents, got {len(ids)}")
    started = time.perf_counter()
    x = np.ascontiguousarray(vectors[:, : settings.pca_dims], dtype=np.float32)
    rng = np.random.default_rng(settings.seed)
    n = len(x)
    fitted = (
        np.sort(rng.choice(n, settings.fit_sample, replace=False))
        if n > settings.fit_sample
        else np.arange(n)
    )
    method = settings.method
    if method == "umap" and len(fitted) <= settings.n_neighbors + 1:
        method = "pca"  # UMAP needs more points than neighbours; tiny corpora get PCA
        log.warning(
            "%d points are too few for UMAP with %d neighbours: using PCA",
            len(fitted),
            settings.n_neighbors,
        )
    coords = np.zeros((n, 2), dtype=np.float32)
    rest = np.setdiff1d(np.arange(n), fitted)
    if method == "pca":  # linear: the sample's axes project every point exactly, nothing placed
        coords = _pca_2d(x[fitted], x)
        rest = rest[:0]
    else:
        coords[fitted] = _umap(x[fitted], settings)
        if len(rest):
            near = neighbours(x[fitted])
            coords[rest] = place(x, near, coords[fitted], settings.place_k, only=rest)
    coords = _normalise(coords)
    meta = {
        "method": method,
        "n": n,
        "fitted": len(fitted),
        "placed": len(rest),
        "pca_dims": int(x.shape[1]),
        "n_neighbors": settings.n_neighbors,
        "min_dist": settings.min_dist,
        "seed": settings.seed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("map: %s on %d points (%d placed) in %.1fs", method, n, len(rest), meta["seconds"])
    return Projection(list(ids), coords, meta)


def _pca_2d(sample: np.ndarray, x: np.ndarray) -> Coords:
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    out = np.zeros((len(x), 2), dtype=np.float32)
    axes = vt[:2]  # one axis only when the vectors have one dimension: the points lie on a line
    out[:, : len(axes)] = (x - mean) @ axes.T
    return out


def _umap(x: np.ndarray, settings: MapSettings) -> Coords:
    with warnings.catch_warnings():  # umap-learn warns at import that TensorFlow is absent
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # type: ignore[import-untyped]  # numba-compiled: imported only when fitting

    kept = _keep_compiled()
    reducer = umap.UMAP(
        n_neighbors=settings.n_neighbors,
        min_dist=settings.min_dist,
        metric="cosine",
        random_state=settings.seed,  # deterministic (and single-threaded) with a seed
        n_jobs=1,  # what a seed implies anyway (said explicitly, umap-learn warns otherwise)
    )
    with warnings.catch_warnings():
        # numba names the few functions it cannot keep (they hold global arrays): those compile
        # in each process, as all of them did before
        warnings.filterwarnings("ignore", "Cannot cache compiled function")
        coords = np.asarray(reducer.fit_transform(x), dtype=np.float32)
    log.debug("map: numba keeps %d of umap-learn's compiled functions on disk", kept)
    return coords


@functools.cache
def _keep_compiled() -> int:
    """Have numba keep umap-learn's and pynndescent's compiled functions on disk, as it keeps
    those they mark ``cache=True``. Most are not marked (the neighbours, their smoothing, the
    layout's epochs), so every process that fitted a map compiled them again: a fresh process's
    first fit of 300 points took 10.7 CPU seconds on these machines (umap-learn's import
    included), 2.2 once kept (``bench/map_compile.py``). This is what the decorator's
    ``cache=True`` does (``Dispatcher.enable_caching``), in the same folders (``NUMBA_CACHE_DIR``
    where set, else next to the package, else numba's user-wide cache); where numba can write to
    none, nothing is kept and each process compiles, as before. Returns how many it now keeps."""
    from numba.core.dispatcher import Dispatcher

    compiled = {
        id(value): value
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in ("umap", "pynndescent")
        for value in list(vars(module).values())
        if isinstance(value, Dispatcher)
    }
    kept = 0
    for function in compiled.values():
        enable = getattr(function, "enable_caching", None)
        if enable is None:  # a numba without it: compiled per process, as before
            continue
        try:
            enable()
        except RuntimeError:  # numba has no folder it may write to for this function
            log.debug("numba cannot keep %s on disk", function, exc_info=True)
            continue
        kept += 1
    return kept


PLACE_BATCH = 10_000  # queries whose neighbours are held at once


def place(
    queries: np.ndarray,
    neighbours: Neighbours,
    coords: Coords,
    k: int,
    only: npt.NDArray[np.int64] | None = None,
) -> Coords:
    """Positions for new points from the positions of their ``k`` nearest fitted points, a batch
    of queries at a time, the weights computed for the whole batch at once (a loop over the
    points in Python was most of placing ten million). A point with no neighbour stays at 0.
    ``only``: place these rows of ``queries`` alone, without copying them out first."""
    picked = np.arange(len(queries)) if only is None else only
    out = np.zeros((len(picked), 2), dtype=np.float32)
    for start in range(0, len(picked), PLACE_BATCH):
        rows, dist = neighbours(queries[picked[start : start + PLACE_BATCH]], k)
        found = rows >= 0
        count = found.sum(axis=1, keepdims=True)
        nearest = np.where(found, dist, np.inf).min(axis=1, keepdims=True)
        spread = np.where(found, dist - np.where(count > 0, nearest, 0.0), 0.0)
        sigma = spread.sum(axis=1, keepdims=True) / np.maximum(count, 1)
        sigma[sigma == 0] = 1.0
        w = np.where(found, np.exp(-spread / sigma), 0.0)
        total = w.sum(axis=1, keepdims=True)
        near = coords[np.where(found, rows, 0)]  # (batch, k, 2)
        placed = (w[:, :, None] * near).sum(axis=1) / np.maximum(total, 1e-300)
        out[start : start + len(rows)] = np.where(count > 0, placed, 0.0)
    return out


def neighbours(fitted: np.ndarray) -> Neighbours:
    """Cosine-distance nearest fitted rows: an HNSW graph over the fitted points (brute force
    cost ~50 s for 58k points among 50k on these machines; the graph, a few seconds)."""
    unit = _unit(fitted)
    index = faiss.IndexHNSWFlat(unit.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 64
    index.add(unit)

    def search(
        queries: np.ndarray, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        sims, rows = index.search(_unit(queries), min(k, len(unit)))
        return rows.astype(np.int64), 1.0 - sims.astype(np.float64)

    return search


def _unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(
        x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32
    )


def _normalise(coords: Coords) -> Coords:
    centre = (coords.max(axis=0) + coords.min(axis=0)) / 2
    centred = coords - centre
    scale = float(np.abs(centred).max()) or 1.0
    return np.asarray(centred / scale, dtype=np.float32)
