"""Index engine ``rabitq-hnsw``: an HNSW graph walked over RaBitQ codes, exact scores from fp32
vectors on disk.

rabitqlib's HnswIndex: the graph's links and a ``bits``-bit RaBitQ code of each vector are all a
walk reads, so the walk touches ~225 bytes a 256-d vector (7 bits) where an fp32 graph reads
1,024, and its distance estimates run in the library's AVX-512 kernels. The best k × ``rescore``
rows it finds are re-scored with their fp32 vectors, memory-mapped from the saved index as
``rabitq``'s are, so every score is exact. The library's walk alone ran 2.8× hnswlib at the
same recall on 100k vectors, one thread; through this engine 1.51–1.55× at 100k and 1.23× at
1M (decision 0032). In memory it holds the codes and the links (~520 bytes a 256-d vector at M 32,
against ~1,300 for ``hnsw``).

Everything but the routing is ``rabitq``'s (``RabitqIndex``): ids, the spilled fp32 rows,
filters, the exact fallback, re-scoring. The codes are RaBitQ residuals of a few k-means centres
(``CLUSTERS``), not IVF lists: the graph routes. The knob the build tunes is ``ef_search``, as
for ``hnsw``. A removal is rabitqlib's own and is kept through a save as a tombstone
(``removed.json``) until removed rows pass ``COMPACT_SHARE``, when saving builds the graph again
without them: as ``hnsw``, an update of a few documents does not rebuild a graph of millions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rabitqlib

from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors, effort_for
from embedlake.index.rabitq import DEFAULT_BITS, TRAIN_PER_LIST, RabitqIndex, build_threads

CLUSTERS = 16  # RaBitQ's centres (each code is a residual of its nearest); rabitqlib's examples
# candidates re-scored per hit: the walk's 7-bit estimates rank well enough that a longer walk
# buys more recall than re-scoring more of it, for the same time (decision 0032)
DEFAULT_RESCORE = 1


class RabitqHnswIndex(RabitqIndex):
    engine = "rabitq-hnsw"
    _LIBRARY: Any = rabitqlib.HnswIndex
    COMPACT_SHARE = 0.2  # as hnsw.py: rebuilding the graph costs a build
    # the centres only shape the codes (the graph routes): the clusters' means leave the
    # smallest residuals, so the estimates' bounds are tighter and the walk computes fewer
    # full estimates; unit centres walked 12–21% slower at the same recall (decision 0032)
    _SPHERICAL = False
    # not the fast build: here the graph is most of the build, so it saved no time, and its
    # codes cost a rung of ef_search for the same recall (bench/ann_build.py --engine
    # rabitq-hnsw, docs/benchmarks.md section 18)
    _KMEANS_ROUNDS, _FAST_BUILD = 20, False

    def __init__(
        self,
        dim: int,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        rescore: int = DEFAULT_RESCORE,
        bits: int = DEFAULT_BITS,
        nlist: int = 0,
        **_: Any,
    ) -> None:
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise InputError(
                f"rabitq-hnsw index options m={m}, ef_construction={ef_construction}, "
                f"ef_search={ef_search}: m ≥ 2, the others ≥ 1"
            )
        super().__init__(dim, nlist=nlist, rescore=rescore, bits=bits)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def sample_for(self, expected: int) -> int:
        return 2 * TRAIN_PER_LIST * CLUSTERS

    def train(self, sample: Matrix, expected: int) -> None:
        """Fit the codes' centres on ``sample`` and reserve room for ``expected`` vectors."""
        sample = check_vectors(sample, self.dim)
        self.nlist = self.nlist or _clusters_for(len(sample))
        self._centres, self._finder = self._kmeans(self._padded(sample)), None
        self._expected = expected

    def _code(self, vectors: Matrix, start: int) -> None:
        if self._index is None and self._centres is None:
            self.nlist = self.nlist or _clusters_for(len(vectors))
        super()._code(vectors, start)

    def _build(self, padded: Matrix) -> Any:
        nearest = self._nearest(padded)
        index = rabitqlib.HnswIndex(
            self._width,
            max(len(padded), self._expected),
            M=self.m,
            ef_construction=self.ef_construction,
            nbits=self.bits,
            metric="ip",
        )
        index.build(padded, self._centres, nearest.astype(np.uint32), build_threads())
        return index

    def _make_room(self, rows: int) -> None:
        capacity = int(self._index.max_elements)
        if rows > capacity:  # doubling: a build of n rows in batches resizes log n times
            self._index.resize(max(rows, 2 * capacity))

    def _walk(self, padded: Matrix, wanted: int, hits: int) -> Any:
        ef = max(effort_for(self.ef_search, hits), wanted)  # a list holds what it returns
        found, _ = self._index.search(padded, wanted, ef, 1)
        return found

    def params(self) -> dict[str, Any]:
        return {
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rescore": self.rescore,
            "bits": self.bits,
            "nlist": self.nlist,
        }

    @classmethod
    def _options(cls, saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        efforts = {k: v for k, v in overrides.items() if k in ("ef_search", "rescore") and v}
        return dict(saved) | efforts


def _clusters_for(n: int) -> int:
    """Centres for ``n`` training vectors: ``CLUSTERS``, fewer where k-means would starve."""
    return max(1, min(CLUSTERS, n // TRAIN_PER_LIST))
