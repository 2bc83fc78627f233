"""An index built from a stream of batches (``tune.add_streamed``, what ``build_index`` does
with the shards): memory bounded by a batch and the samples, never all the vectors at once."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedlake import index as vector_index
from embedlake.embeddings.vectors import document_batches, document_vectors
from embedlake.index import tune
from embedlake.index.keys import passage_key
from embedlake.index.rows import Rows


class Batches:
    """``n`` unit vectors of ``dim`` dimensions made a batch at a time, the same on every pass."""

    def __init__(self, n: int, dim: int, batch: int) -> None:
        self.n, self.dim, self.batch = n, dim, batch

    def __iter__(self) -> Iterator[tuple[list[str], np.ndarray]]:
        for number, start in enumerate(range(0, self.n, self.batch)):
            size = min(self.batch, self.n - start)
            rng = np.random.default_rng(1000 + number)
            x = rng.standard_normal((size, self.dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield [f"d{start + r}" for r in range(size)], x


@pytest.mark.parametrize("engine", ["hnsw", "rabitq", "rabitq-hnsw"])
def test_a_streamed_build_holds_a_batch_not_the_vectors(engine: str) -> None:
    n, dim, batch = 20_000, 512, 1_000  # 40 MB of vectors in batches of 2 MB
    # the claim is memory: a cheap graph (ef_construction 16) and a low recall target keep the
    # build and the tuning's climb short on random vectors (59 s to 21 s for the three engines;
    # the same peaks)
    index = vector_index.create(engine, dim, m=16, ef_construction=16)
    tracemalloc.start()  # numpy's buffers and Python's objects; not faiss's or rabitqlib's own
    try:
        tuning = tune.add_streamed(index, Batches(n, dim, batch), 0.5, sample=500, train=1_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == n and tuning is not None and tuning.sample == 500
    # a batch (and its copies), the samples (1 MB held back, 2 MB to train rabitq, stacked) and
    # the ids: 10-14 MB measured; holding every vector is 40 MB before any copy (96-121 measured)
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB traced at the peak"
    if engine == "rabitq":  # its lists were trained on the sample, for all the vectors
        assert index.params()["nlist"] == 1_000 // 64  # as many as the sample trains well
    if engine == "rabitq-hnsw":  # its codes' centres too, and room made for every vector
        assert index.params()["nlist"] == min(16, 1_000 // 64)
        assert index._index.max_elements == n  # type: ignore[attr-defined]  # reserved once


@pytest.mark.parametrize("engine", ["hnsw", "rabitq", "rabitq-hnsw", "exact"])
def test_batches_give_every_vector_once_and_a_tuning_unseen_queries_meet(engine: str) -> None:
    n, dim = 3_000, 32
    batches = Batches(n, dim, 217)  # batches that are not a divisor of the sample or anything
    ids = [i for batch_ids, _ in batches for i in batch_ids]
    vectors = np.vstack([v for _, v in batches])
    params = {"quantization": "int8"} if engine == "exact" else {}
    streamed = vector_index.create(engine, dim, **params)
    tuning = tune.add_streamed(streamed, batches, 0.9, sample=300, train=1_500)
    assert tuning is not None and tuning.reached and len(streamed) == n
    assert sorted(streamed.ids()) == sorted(ids)
    for row in (0, 216, 217, 1_234, n - 1):  # each under its id, held back or not
        stored = streamed.vector(ids[row])
        assert stored is not None and np.allclose(stored, vectors[row], atol=1e-6)
    queries = np.random.default_rng(7).standard_normal((200, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = vector_index.create("exact", dim)
    exact.add(ids, vectors)
    truth = [{d for d, _ in row} for row in exact.search(queries, 10)]
    found = [{d for d, _ in row} for row in streamed.search(queries, 10)]
    recall = np.mean([len(t & f) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9 - 0.04  # the target, within the 300-query sample's error


def test_document_vectors_a_batch_at_a_time_keep_each_document_whole() -> None:
    """A document whose passages a batch boundary splits comes out once, the mean of them all
    (what ``document_vectors`` gives for everything at once)."""
    keys = ["a", passage_key("b", 0, 9), passage_key("b", 9, 20), passage_key("b", 20, 31), "c"]
    keys += [passage_key("d", 0, 5), passage_key("d", 5, 9)]
    vectors = np.random.default_rng(0).standard_normal((len(keys), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # as every encoder's are
    whole_ids, whole = document_vectors(keys, vectors)
    for size in (1, 2, 3, len(keys)):
        batches = [(keys[s : s + size], vectors[s : s + size]) for s in range(0, len(keys), size)]
        parts = list(document_batches(batches))
        ids = [d for part_ids, _ in parts for d in part_ids]
        assert ids == whole_ids == ["a", "b", "c", "d"]
        assert np.allclose(np.vstack([v for _, v in parts]), whole, atol=1e-6)


@pytest.mark.parametrize("spill", [False, True])
def test_rows_append_read_and_save_in_both_forms(spill: bool, tmp_path: Path) -> None:
    """``index.rows.Rows``: rows appended in batches read back as one matrix, saved as .npy,
    and a loaded file's rows (read-only) extended by copying them first."""
    rng = np.random.default_rng(0)
    first, more = rng.random((3_000, 8), dtype=np.float32), rng.random((7, 8), dtype=np.float32)
    rows = Rows(8, spill=spill)
    assert rows.matrix.shape == (0, 8)
    for start in range(0, 3_000, 1_100):
        rows.append(first[start : start + 1_100])
    assert len(rows) == 3_000 and np.array_equal(rows.matrix, first)
    rows.save(tmp_path / "a.npy")
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert np.array_equal(loaded, first)
    grown = Rows(8, spill=spill, base=loaded)
    grown.append(more)
    grown.save(tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "b.npy"), np.vstack([first, more]))
    assert np.array_equal(loaded, first)  # the loaded file itself is never written
