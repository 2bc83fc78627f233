"""Index engine ``rabitq``: compressed codes in memory, exact scores from fp32 vectors on disk.

rabitqlib's IVF-RaBitQ (the RaBitQ authors' library; Gao and Long 2024, and its extended form
with several bits a dimension): the vectors are clustered into ``nlist`` lists (spherical k-means
by faiss on a sample of the first vectors added) and each is kept as a ``bits``-bit RaBitQ code
(7 bits: ~350 bytes for 384 dimensions, against 1,536 in fp32 and ~1,800 for an HNSW graph over
fp32). A search visits the ``nprobe`` lists nearest the query, ranks their codes by RaBitQ's
estimate of the inner product, and re-scores the best k × ``rescore`` with their fp32 vectors,
which a loaded index memory-maps, so only those rows are read and every score is exact.
``nprobe`` is the knob the build tunes to the recall target (``tune.py``), per hit like HNSW's
``ef_search``; ``rescore`` is settled first. Why this library and these defaults: decision 0024.

rabitqlib takes 64 dimensions or more: narrower vectors (a small PCA) are padded with zeros,
which changes no inner product. Tombstones are rabitqlib's own removals; the next save leaves
them out. A filter that keeps few vectors is scanned exactly over its rows (as ``hnsw`` does); a
broad one fetches deeper in proportion and keeps the allowed rows; a query that comes back short
is answered exactly, so k hits come back whenever k exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import rabitqlib

from embedlake.errors import InputError
from embedlake.index import TUNED_K, Matrix, check_vectors
from embedlake.index import quantize as q
from embedlake.index.rows import Rows
from embedlake.machine import threads

OPTIONS, CODES, CENTRES = "rabitq.json", "index.rabitq", "centroids.npy"
REMOVED = "removed.json"  # the tombstones' positions, beside ids.json
DEFAULT_BITS = 7  # the fewest that reached recall 0.95 without deep re-scoring (decision 0024)
_MIN_DIM = 64  # rabitqlib's rotation needs at least this many dimensions
TRAIN_PER_LIST = 64  # vectors per list at least (faiss's k-means warns under 39)
# From this many lists on (about a million vectors), the lists are trained in two levels and each
# vector's list is found by a graph over the centres: with ~4·√n lists, k-means and finding every
# vector's list against every centre grow as n^1.5 (decision 0024's second addendum)
LARGE_NLIST = 4096
_SCAN_SHARE, _SCAN_MIN = 0.05, 20_000  # a filter this narrow is scanned exactly (as hnsw.py)
_GATHER = 32_768  # rows of fp32 vectors read at a time by an exact fallback (48 MB at 384-d)


def lists_for(n: int) -> int:
    """Lists for ``n`` vectors: about 4·√n (faiss's guideline for IVF), with enough vectors for
    each list's k-means."""
    return max(1, min(round(4 * math.sqrt(n)), n // TRAIN_PER_LIST))


class RabitqIndex:
    engine = "rabitq"
    _LIBRARY: Any = rabitqlib.IvfIndex
    # removed rows over this share: saving codes the live ones again without them (cheap for
    # IVF, whose lists' centres stay: any removal does it)
    COMPACT_SHARE = 0.0
    # unit centres (spherical k-means): the lists are probed by inner product with the query
    _SPHERICAL = True
    # The fast build (decision 0024's addendum): k-means in 10 rounds (faiss's default is 25),
    # each added row's list found by faiss's BLAS search (rabitqlib's own is slower), and
    # rabitqlib's fast quantisation (one rescaling constant for every code, not a search per
    # vector). A million vectors built 2.5× faster than with 20 rounds and rabitqlib's own
    # lists and codes, for < 1 point of recall@10 at a given nprobe.
    _KMEANS_ROUNDS, _FAST_BUILD = 10, True

    def __init__(
        self,
        dim: int,
        nlist: int = 0,
        nprobe: int = 16,
        rescore: int = q.DEFAULT_RESCORE,
        bits: int = DEFAULT_BITS,
        **_: Any,
    ) -> None:
        if nlist < 0 or nprobe < 1 or rescore < 1 or not 1 <= bits <= 9:
            raise InputError(
                f"rabitq index options nlist={nlist} (0: from the first vectors added), "
                f"nprobe={nprobe}, rescore={rescore}, bits={bits}: nlist ≥ 0, nprobe and "
                "rescore ≥ 1, bits 1 to 9"
            )
        self.dim, self.nlist, self.nprobe, self.rescore, self.bits = (
            dim,
            nlist,
            nprobe,
            rescore,
            bits,
        )
        self._width = max(dim, _MIN_DIM)
        self._index: Any = None  # built, with its lists' centres, at the first add
        self._centres: Any = None
        self._finder: Any = None  # a graph over many centres (``LARGE_NLIST``), made once
        self._ids: list[str] = []
        self._id_rows: Any = None  # ``_ids`` as an object array, made by the first search
        self._pos: dict[str, int] = {}
        self._rows = Rows(dim, spill=True)  # fp32 rows on disk: only re-scored
        self._shares: Any = None  # each list's share of a training sample (``train``)
        self._expected = 0  # the vectors ``train`` was told to expect

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def _vectors(self) -> Any:
        return self._rows.matrix

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        self.remove([i for i in ids if i in self._pos])  # re-adding an id replaces it
        start = len(self._ids)
        self._code(vectors, start)
        self._ids.extend(ids)
        self._id_rows = None
        self._pos.update({doc_id: start + n for n, doc_id in enumerate(ids)})
        self._rows.append(vectors)

    def sample_for(self, expected: int) -> int:
        """Rows ``train`` wants for ``expected`` vectors: twice the fewest that train each list
        well (faiss's k-means uses at most 256 a list)."""
        return 2 * TRAIN_PER_LIST * (self.nlist or lists_for(expected))

    def train(self, sample: Matrix, expected: int) -> None:
        """Fit the lists' centres on ``sample``, a uniform sample of the ``expected`` vectors
        about to be added (in batches of any size): ``nlist`` from ``expected`` when unset, and
        each list's room reserved in proportion to its share of the sample, so that adding a
        batch does not copy every list it adds to. Without it, the first ``add`` trains on its
        own vectors."""
        sample = check_vectors(sample, self.dim)
        # as many lists as the vectors call for, and the sample can train
        self.nlist = self.nlist or min(lists_for(expected), max(1, len(sample) // TRAIN_PER_LIST))
        self._centres, self._finder = self._kmeans(self._padded(sample)), None
        nearest = self._nearest(self._padded(sample))
        self._shares = np.bincount(nearest, minlength=len(self._centres)) / max(len(sample), 1)
        self._expected = expected

    def _code(self, vectors: Matrix, start: int) -> None:
        """Code ``vectors`` as rows ``start``… (the index built at the first, with its lists
        trained on them unless ``train`` came first)."""
        padded = self._padded(vectors)
        if self._index is None:
            if self._centres is None:
                self.nlist = self.nlist or lists_for(len(vectors))
                self._centres, self._finder = self._kmeans(padded), None
            self._index = self._build(padded)
            return
        self._make_room(start + len(padded))
        lists = self._nearest(padded).astype(np.uint32) if self._FAST_BUILD else None
        added = self._index.add(padded, lists, build_threads(), self._FAST_BUILD)
        if int(added[0]) != start:  # rabitqlib numbers rows in order: positions are ids
            raise RuntimeError(f"rabitq index: rows numbered from {added[0]}, not {start}")

    def _make_room(self, rows: int) -> None:
        """Room for ``rows`` rows in all before an add (an IVF list grows by itself)."""

    def _kmeans(self, padded: Matrix) -> Any:
        """k-means centres of ``nlist`` lists (``_SPHERICAL``), on at most 256 rows a list."""
        if len(padded) > self.nlist * 256:  # faiss samples 256 a list at most
            rng = np.random.default_rng(0)
            padded = padded[np.sort(rng.choice(len(padded), self.nlist * 256, replace=False))]
        if self.nlist >= LARGE_NLIST:
            return self._two_level(padded)
        return self._clusters(padded, self.nlist)

    def _clusters(self, padded: Matrix, k: int) -> Any:
        kmeans = faiss.Kmeans(
            self._width,
            k,
            niter=self._KMEANS_ROUNDS,
            seed=0,
            spherical=self._SPHERICAL,
            min_points_per_centroid=1,  # callers give enough rows; faiss would print a warning
        )
        kmeans.train(padded)
        return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)

    def _two_level(self, padded: Matrix) -> Any:
        """``nlist`` centres in two levels (as faiss's ``two_level_clustering``): √nlist coarse
        clusters of the sample, then each split into lists in proportion to its rows. Each
        round costs √nlist distances a row instead of nlist."""
        coarse = self._clusters(padded, max(2, round(math.sqrt(self.nlist))))
        finder = (faiss.IndexFlatIP if self._SPHERICAL else faiss.IndexFlatL2)(self._width)
        finder.add(coarse)
        top = finder.search(padded, 1)[1][:, 0]
        sizes = np.bincount(top, minlength=len(coarse))
        # lists per coarse cluster: cumulative rounding, so they add up to nlist; at least one
        # for a cluster with rows, at most its rows
        bounds = np.cumsum(sizes) * self.nlist // len(padded)
        lists = np.minimum(np.maximum(np.diff(bounds, prepend=0), sizes > 0), sizes)
        order = np.argsort(top, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        centres = [
            self._clusters(padded[order[starts[c] : starts[c + 1]]], int(lists[c]))
            for c in np.flatnonzero(lists)
        ]
        out = np.ascontiguousarray(np.vstack(centres), dtype=np.float32)
        self.nlist = len(out)
        return out

    def _nearest(self, padded: Matrix) -> Any:
        """Each row's centre: by inner product for unit centres, else by distance (the
        smallest residual, which is what a code is of). Among many centres, by a graph over
        them (a row may get a centre next to its nearest: its code is of a larger residual)."""
        metric = faiss.METRIC_INNER_PRODUCT if self._SPHERICAL else faiss.METRIC_L2
        if len(self._centres) < LARGE_NLIST:
            nearest = faiss.IndexFlat(self._width, metric)
            nearest.add(self._centres)
            return nearest.search(padded, 1)[1][:, 0]
        if self._finder is None:
            finder = faiss.IndexHNSWFlat(self._width, 32, metric)
            finder.hnsw.efConstruction, finder.hnsw.efSearch = 80, 64
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)  # a graph built on one thread is the same every time
            try:
                finder.add(self._centres)
            finally:
                faiss.omp_set_num_threads(threads)
            self._finder = finder
        return self._finder.search(padded, 1)[1][:, 0]

    def _build(self, padded: Matrix) -> Any:
        """An index of ``padded`` (rows 0…n-1) on the lists' centres, with room reserved for
        the vectors ``train`` expects."""
        lists = self._nearest(padded)
        index = rabitqlib.IvfIndex(self._width, len(padded), len(self._centres), self.bits, "ip")
        index.build(
            padded, self._centres, lists.astype(np.uint32), build_threads(), self._FAST_BUILD
        )
        if self._shares is not None:
            for cluster, share in enumerate(self._shares.tolist()):
                # 20% and a few rows over its sampled share: a list that outgrows it is copied
                index.reserve(cluster, int(share * self._expected * 1.2) + 8)
        return index

    def _padded(self, vectors: Any) -> Matrix:
        if self._width == self.dim:  # (on every search: one call, a no-op for checked queries)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        vectors = np.asarray(vectors, dtype=np.float32)
        return np.ascontiguousarray(np.pad(vectors, ((0, 0), (0, self._width - self.dim))))

    def remove(self, ids: Sequence[str]) -> None:
        rows = [p for p in (self._pos.pop(doc_id, None) for doc_id in ids) if p is not None]
        if rows and self._index is not None:
            self._index.remove(np.array(rows, dtype=np.uint32))

    def search(
        self,
        queries: Matrix,
        k: int,
        allowed: Collection[str] | None = None,
        effort_hits: int | None = None,
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
        wanted = k * self.rescore
        if rows is not None:  # fetch deeper as the filter is narrower
            wanted = math.ceil(wanted * len(self._pos) / len(rows))
        hits = k if effort_hits is None else min(effort_hits, k)
        found = self._walk(self._padded(queries), min(wanted, self._index.max_elements), hits)
        # rabitqlib's empty slot (uint32's largest) lies past the last row: it ends a row's list
        candidates = found.astype(np.int64)
        if rows is not None:  # the filter's rows, moved to the front of each list
            kept = np.isin(candidates, rows)
            order = np.argsort(~kept, axis=1, kind="stable")
            candidates = np.take_along_axis(np.where(kept, candidates, -1), order, axis=1)
        scores, best = q.rescore(queries, self._vectors, candidates, k)
        if min(best[:, k - 1].tolist()) < 0:  # a list held fewer than k: answer it exactly
            short = np.flatnonzero(best[:, k - 1] < 0)  # (hits fill each row from the left)
            scores[short], best[short] = self._exact(queries[short], k, rows)
        return self._hits(scores, best)

    def _walk(self, padded: Matrix, wanted: int, hits: int) -> Any:
        """The ``wanted`` best rows of each query by their codes' estimate, at the effort of
        ``hits`` hits (empty slots uint32's largest)."""
        nprobe = max(self.nprobe, -(-self.nprobe * hits // TUNED_K))  # the same effort per hit
        found, _ = self._index.search(padded, wanted, nprobe, None, 1)
        return found

    def _exact(self, queries: Matrix, k: int, rows: Any) -> tuple[q.Scores, q.Rows]:
        """Exact top ``k`` over ``rows`` (None: every live row); ``k`` ≤ their number. Their fp32
        vectors are gathered ``_GATHER`` rows at a time, so memory stays bounded."""
        if rows is None:
            rows = np.array(sorted(self._pos.values()), dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        for start in range(0, len(rows), _GATHER):
            part = rows[start : start + _GATHER]
            s, f = q.scan(queries, np.asarray(self._vectors[part]), min(k, len(part)))
            both_s = np.hstack([scores, s])
            both_r = np.hstack([found, np.where(f >= 0, part[np.maximum(f, 0)], -1)])
            order = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(both_s, order, axis=1)
            found = np.take_along_axis(both_r, order, axis=1)
        return scores, found

    def _hits(self, scores: Any, rows: Any) -> list[list[tuple[str, float]]]:
        """Each row's ids and scores up to its first -1 (rows fill from the left)."""
        if self._id_rows is None:  # ids by row as an array: one gather a search, not k lookups
            self._id_rows = np.array(self._ids, dtype=object)
        ids = self._id_rows[rows].tolist()  # -1 gathers the last id: cut off below
        hits = []
        for i, s, r in zip(ids, scores.tolist(), rows.tolist(), strict=True):
            n = len(r) if r[-1] >= 0 else r.index(-1)
            hits.append(list(zip(i[:n], s[:n], strict=True)))
        return hits

    def ids(self) -> list[str]:
        return list(self._pos)

    def vector(self, doc_id: str) -> Matrix | None:
        pos = self._pos.get(doc_id)
        return None if pos is None else np.array(self._vectors[pos], dtype=np.float32)

    def save(self, folder: Path) -> None:
        if len(self._ids) - len(self._pos) > self.COMPACT_SHARE * len(self._ids):
            self._compact()
        if self._index is not None:
            self._index.save(str(folder / CODES))
            np.save(folder / CENTRES, self._centres)
        self._rows.save(folder / "vectors.npy")
        (folder / "ids.json").write_text(json.dumps(self._ids), encoding="utf-8")
        live = np.zeros(len(self._ids), dtype=bool)
        live[list(self._pos.values())] = True
        if not live.all():  # tombstones: rows the codes' own removals keep out of searches
            removed = np.flatnonzero(~live).tolist()
            (folder / REMOVED).write_text(json.dumps(removed), encoding="utf-8")
        (folder / OPTIONS).write_text(json.dumps(self.params()), encoding="utf-8")

    def _compact(self) -> None:
        """Leave the removed rows out: the live ones renumbered and coded again on the same
        centres (no k-means), ``_GATHER`` rows at a time."""
        keep = np.array(sorted(self._pos.values()), dtype=np.int64)
        previous = self._rows  # read from while the new rows are written
        self._ids = [self._ids[r] for r in keep.tolist()]
        self._id_rows = None
        self._pos = {doc_id: n for n, doc_id in enumerate(self._ids)}
        self._rows, self._index = Rows(self.dim, spill=True), None
        self._expected = len(keep)
        for start in range(0, len(keep), _GATHER):
            block = np.asarray(previous.matrix[keep[start : start + _GATHER]], dtype=np.float32)
            self._code(block, start)
            self._rows.append(block)

    def params(self) -> dict[str, Any]:
        return {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "rescore": self.rescore,
            "bits": self.bits,
        }

    @classmethod
    def _options(cls, saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """The constructor's options of a saved index: its own, but for the search effort
        ``overrides`` sets (``nprobe``, ``rescore``); lists and bits are the saved."""
        efforts = {k: v for k, v in overrides.items() if k in ("nprobe", "rescore") and v}
        return {k: saved[k] for k in ("nlist", "nprobe", "rescore", "bits")} | efforts

    @classmethod
    def load(cls, folder: Path, **overrides: Any) -> RabitqIndex:
        saved = json.loads((folder / OPTIONS).read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # paged in as re-scored
        index = cls(int(vectors.shape[1]), **cls._options(saved, overrides))
        if (folder / CODES).is_file():  # read whole: the codes are what stays in memory
            index._index = cls._LIBRARY.load(str(folder / CODES))
            index._centres = np.load(folder / CENTRES)
        index._ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        tombstones = folder / REMOVED
        removed = set(json.loads(tombstones.read_text())) if tombstones.is_file() else set()
        # an id removed and added again is in ids twice: its live position is the later one
        index._pos = {i: n for n, i in enumerate(index._ids) if n not in removed}
        index._rows = Rows(index.dim, spill=True, base=vectors)
        return index


def build_threads() -> int:
    """Threads for building codes: every core this process may use (``OMP_NUM_THREADS`` caps
    it, as it caps faiss's)."""
    return threads()
