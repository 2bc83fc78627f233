"""Compressed vectors for the exact engine, and the scan kernels that read them at memory speed.

- ``int8``: each dimension scaled by 127 / its largest absolute value and rounded (per-dimension
  scales kept 0.994 of the fp32 top 10 on MiniLM vectors, one global scale 0.992; see
  ``docs/decisions/0013-quantised-search.md``). Scanned by faiss's ``IndexScalarQuantizer`` with
  ``QT_8bit_direct_signed``, whose inner product is an int8 × int8 SIMD dot: the query is divided
  by the same scales and rounded to int8 too, and its scores are multiplied back.
- ``binary``: one sign bit per dimension, scanned by Hamming distance (faiss ``IndexBinaryFlat``,
  popcount); a score is ``1 - 2 · hamming / dim``, the cosine of the two ±1 vectors.
- ``scan``: exact fp32 top ``k``, blocked so that the block's scores stay in cache: one query at a
  time with faiss's SIMD dot product (NumPy's matrix-vector product runs at half the memory speed),
  many queries with NumPy's matrix product (BLAS sgemm); faiss's heap keeps the top ``k``.

Rows are positions in the index; -1 fills a row of results that has fewer than ``k`` hits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, cast, get_args

import faiss
import numpy as np
import numpy.typing as npt

from embedlake.errors import ConfigError

Quantization = Literal["none", "int8", "binary"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
# k × 10 candidates kept 0.98 (binary) and 1.00 (int8) of the fp32 top 10 on MiniLM vectors
DEFAULT_RESCORE = 10

Scores = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_BLOCK = 4096  # rows per block: a block's scores stay in L2 for the heap, its rows in L3
_GEMM_QUERIES = 8  # from this many queries on, one matrix product per block beats a dot per query


def check_options(quantization: object, rescore: object) -> tuple[Quantization, int]:
    """The index options, or ConfigError naming the bad one."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"index option quantization={quantization!r} is unknown "
            f"(known: {', '.join(QUANTIZATIONS)})"
        )
    if isinstance(rescore, bool) or not isinstance(rescore, int) or rescore < 0:
        raise ConfigError(
            f"index option rescore={rescore!r} must be an integer ≥ 0 "
            f"(candidates re-scored with fp32 = k × rescore; 0 = scores from the codes)"
        )
    return cast(Quantization, quantization), rescore


def scan(
    queries: npt.NDArray[np.float32], vectors: Any, k: int, mask: Mask | None = None
) -> tuple[Scores, Rows]:
    """Exact top ``k`` of each query by inner product over the rows of ``vectors`` (a memory-mapped
    array is read block by block); rows where ``mask`` is False are skipped."""
    nq, n = len(queries), len(vectors)
    scores = np.empty((nq, k), dtype=np.float32)
    rows = np.empty((nq, k), dtype=np.int64)
    heap: Any = faiss.float_minheap_array_t()
    heap.nh, heap.k = nq, k
    heap.val, heap.ids = faiss.swig_ptr(scores), faiss.swig_ptr(rows)
    heap.heapify()
    buffer = np.empty((nq, min(_BLOCK, n)), dtype=np.float32)
    for start in range(0, n, _BLOCK):
        block = np.asarray(vectors[start : start + _BLOCK])
        size = len(block)
        out = buffer if size == buffer.shape[1] else np.empty((nq, size), dtype=np.float32)
        if nq >= _GEMM_QUERIES:
            np.matmul(queries, block.T, out=out)
        else:
            for i in range(nq):
                faiss.fvec_inner_products_ny(  # type: ignore[attr-defined]  # missing in stubs
                    faiss.swig_ptr(out[i]), faiss.swig_ptr(queries[i]), faiss.swig_ptr(block),
                    block.shape[1], size,
                )  # fmt: skip
        if mask is not None:
            skip = ~mask[start : start + size]
            if skip.any():
                out[:, skip] = -np.inf  # below the heap's floor (-FLT_MAX): never kept
        # faiss parallelises addn above 100,000 values with OpenMP, whose threads wait badly on
        # a busy machine (10× slower on 2 shared cores, measured): add in smaller slices instead
        step = max(1, 100_000 // size)
        for first in range(0, nq, step):
            rows_in = min(step, nq - first)
            heap.addn(size, faiss.swig_ptr(out[first : first + rows_in]), start, first, rows_in)
    heap.reorder()
    return scores, rows


def rescore(
    queries: npt.NDArray[np.float32], vectors: Any, candidates: Rows, k: int
) -> tuple[Scores, Rows]:
    """The top ``k`` of each query's candidate rows by their exact fp32 inner product (-1 and
    score -FLT_MAX fill a row with fewer). A row's candidates end at its first empty slot (-1,
    or past the end of ``vectors``). Only the candidates' rows are read (paged in, for a
    memory-mapped ``vectors``), in one call of faiss's gather, dot and heap: this runs on every
    search of a compressed index, where NumPy's gather, product and sort cost more for one query
    than the rows' reads."""
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    vectors = np.asarray(vectors)  # a memory map as a plain ndarray, for its buffer
    if queries.dtype != np.float32 or not queries.flags.c_contiguous:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
    if (
        queries.shape[1] != vectors.shape[1]
        or len(cand) != len(queries)
        or not vectors.flags.c_contiguous
    ):
        raise ValueError(f"rescore: {queries.shape} queries against {vectors.shape} rows")
    scores = np.empty((len(queries), k), dtype=np.float32)
    rows = np.empty((len(queries), k), dtype=np.int64)
    faiss.knn_inner_products_by_idx(  # type: ignore[attr-defined]  # missing in stubs
        faiss.swig_ptr(queries),
        faiss.swig_ptr(vectors),
        faiss.swig_ptr(cand),
        queries.shape[1],
        len(queries),
        len(vectors),
        cand.shape[1],
        k,
        faiss.swig_ptr(scores),
        faiss.swig_ptr(rows),
        cand.shape[1],  # the stride between rows: its default -1 means ``len(vectors)``
    )
    return scores, rows


def _params(mask: Mask | None) -> tuple[Any, Any]:
    """Search parameters with a bitmap selector of the rows to keep (and the bitmap, which faiss
    does not own: the caller keeps it alive while it searches)."""
    if mask is None:
        return None, None
    bitmap = np.packbits(mask, bitorder="little")
    params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
    return params, bitmap


class Int8Codes:
    """int8 codes with per-dimension scales; refitted when the index has doubled since the fit,
    so that early small batches do not fix the scales for good (later outliers are clipped)."""

    kind = "int8"

    def __init__(self, dim: int, scale: npt.NDArray[np.float32] | None = None) -> None:
        self.dim = dim
        self.scale = scale  # code = round(value × scale)
        self.fitted_on = 0
        self._index = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
        )

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        return len(self) * self.dim

    def extend(self, vectors: Any, start: int) -> None:
        """Encode ``vectors[start:]`` (all of them again, with new scales, when due for a refit)."""
        if self.scale is None or len(vectors) >= 2 * self.fitted_on:
            peak = np.zeros(self.dim, dtype=np.float32)
            for s in range(0, len(vectors), 65_536):
                block = np.abs(np.asarray(vectors[s : s + 65_536]))
                np.maximum(peak, block.max(axis=0), out=peak)
            self.scale = (127 / np.maximum(peak, 1e-12)).astype(np.float32)
            self.fitted_on, start = len(vectors), 0
            self._index.reset()
        for s in range(start, len(vectors), 65_536):
            self._add(self.encode(np.asarray(vectors[s : s + 65_536])))

    def encode(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int8]:
        assert self.scale is not None
        codes: npt.NDArray[np.int8] = np.clip(np.rint(vectors * self.scale), -127, 127).astype(
            np.int8
        )
        return codes

    def _add(self, codes: npt.NDArray[np.int8]) -> None:
        # faiss stores a direct_signed code as value + 128 in a byte
        self._index.add_sa_codes(codes.view(np.uint8) ^ np.uint8(0x80))

    def codes(self) -> npt.NDArray[np.int8]:
        raw = faiss.vector_to_array(self._index.codes).reshape(-1, self.dim)
        codes: npt.NDArray[np.int8] = (raw ^ np.uint8(0x80)).view(np.int8)
        return codes

    def search(
        self, queries: npt.NDArray[np.float32], k: int, mask: Mask | None
    ) -> tuple[Scores, Rows]:
        assert self.scale is not None
        scaled = queries / self.scale
        # faiss rounds the query to int8 as well: spread it over the whole int8 range first
        unit = np.maximum(np.abs(scaled).max(axis=1, keepdims=True), 1e-30) / 127
        params, _bitmap = _params(mask)
        scores, rows = self._index.search(np.rint(scaled / unit), k, params=params)
        return (scores * unit).astype(np.float32), rows

    def save(self, folder: Path, keep: Rows) -> None:
        assert self.scale is not None
        np.save(folder / "codes.npy", self.codes()[keep])
        np.save(folder / "scale.npy", self.scale)
        (folder / "codes.json").write_text(
            json.dumps({"quantization": self.kind, "fitted_on": self.fitted_on}), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path, dim: int) -> Int8Codes:
        meta = json.loads((folder / "codes.json").read_text(encoding="utf-8"))
        codes = cls(dim, np.load(folder / "scale.npy"))
        codes.fitted_on = int(meta["fitted_on"])
        stored = np.load(folder / "codes.npy", mmap_mode="r")  # copied once, into faiss
        for s in range(0, len(stored), 65_536):
            codes._add(np.asarray(stored[s : s + 65_536]))
        return codes


class BinaryCodes:
    """Sign bits, eight dimensions a byte."""

    kind = "binary"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexBinaryFlat(8 * ((dim + 7) // 8))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        return len(self) * self._index.code_size

    def extend(self, vectors: Any, start: int) -> None:
        for s in range(start, len(vectors), 65_536):
            self._index.add(np.packbits(np.asarray(vectors[s : s + 65_536]) > 0, axis=1))

    def codes(self) -> npt.NDArray[np.uint8]:
        xb = self._index.xb  # type: ignore[attr-defined]  # missing in stubs
        return faiss.vector_to_array(xb).reshape(-1, self._index.code_size)

    def search(
        self, queries: npt.NDArray[np.float32], k: int, mask: Mask | None
    ) -> tuple[Scores, Rows]:
        params, _bitmap = _params(mask)
        bits = np.packbits(queries > 0, axis=1)
        hamming, rows = self._index.search(bits, k, params=params)
        return (1 - 2 * hamming / self.dim).astype(np.float32), rows

    def save(self, folder: Path, keep: Rows) -> None:
        np.save(folder / "codes.npy", self.codes()[keep])
        (folder / "codes.json").write_text(
            json.dumps({"quantization": self.kind}), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path, dim: int) -> BinaryCodes:
        codes = cls(dim)
        stored = np.load(folder / "codes.npy", mmap_mode="r")
        for s in range(0, len(stored), 65_536):
            codes._index.add(np.ascontiguousarray(stored[s : s + 65_536]))
        return codes


Codes = Int8Codes | BinaryCodes


def make(quantization: Quantization, dim: int) -> Codes | None:
    if quantization == "int8":
        return Int8Codes(dim)
    if quantization == "binary":
        return BinaryCodes(dim)
    return None


def load(folder: Path, dim: int) -> Codes | None:
    """The codes saved in ``folder``, or None for an index saved without them."""
    path = folder / "codes.json"
    if not path.is_file():
        return None
    kind = json.loads(path.read_text(encoding="utf-8"))["quantization"]
    return Int8Codes.load(folder, dim) if kind == "int8" else BinaryCodes.load(folder, dim)
