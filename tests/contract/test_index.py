"""The index contract: every engine passes the same behaviour; HNSW also against exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedlake import index as vector_index
from embedlake.errors import InputError
from embedlake.evaluate.metrics import ann_recall
from embedlake.index import ENGINES, VectorIndex


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make(engine: str, dim: int = 16) -> VectorIndex:
    return vector_index.create(engine, dim, m=16, ef_construction=100, ef_search=64)


def test_each_vector_finds_itself_first(engine: str) -> None:
    idx = _make(engine)
    vecs = _unit(200, 16)
    ids = [f"d{i}" for i in range(200)]
    idx.add(ids, vecs)
    assert len(idx) == 200
    results = idx.search(vecs[:20], 5)
    assert [r[0][0] for r in results] == ids[:20]
    assert all(abs(r[0][1] - 1.0) < 1e-5 for r in results)
    assert all(len(r) == 5 for r in results)
    scores = [s for _, s in results[0]]
    assert scores == sorted(scores, reverse=True)


def test_remove_and_readd(engine: str) -> None:
    idx = _make(engine)
    vecs = _unit(50, 16)
    idx.add([str(i) for i in range(50)], vecs)
    idx.remove(["0", "1", "missing"])
    assert len(idx) == 48
    top = idx.search(vecs[:2], 50)
    assert all(d not in {"0", "1"} for row in top for d, _ in row)
    idx.add(["0"], vecs[10:11])  # re-adding an id replaces its vector
    assert len(idx) == 49
    assert idx.search(vecs[10:11], 2)[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert {d for d, _ in idx.search(vecs[10:11], 2)[0]} == {"0", "10"}


def test_save_and_load_give_the_same_results(engine: str, tmp_path: Path) -> None:
    idx = _make(engine)
    vecs = _unit(300, 16, seed=1)
    idx.add([str(i) for i in range(300)], vecs)
    idx.remove(["5"])
    queries = _unit(10, 16, seed=2)
    before = idx.search(queries, 10)
    idx.save(tmp_path)
    loaded = vector_index.load(engine, tmp_path, ef_search=64)
    assert len(loaded) == 299
    after = loaded.search(queries, 10)
    assert [[d for d, _ in r] for r in after] == [[d for d, _ in r] for r in before]


def test_empty_index_and_k_larger_than_size(engine: str) -> None:
    idx = _make(engine)
    assert idx.search(_unit(2, 16), 3) == [[], []]
    idx.add(["a", "b"], _unit(2, 16))
    assert len(idx.search(_unit(1, 16), 10)[0]) == 2


@pytest.mark.parametrize(
    "bad", [np.zeros((1, 15)), np.full((1, 16), np.nan), np.full((1, 16), np.inf)]
)
def test_bad_vectors_are_refused(engine: str, bad: np.ndarray) -> None:
    idx = _make(engine)
    with pytest.raises(InputError):
        idx.add(["x"], bad)
    with pytest.raises(InputError):
        idx.search(bad, 1)
    with pytest.raises(InputError, match="ids for"):
        idx.add(["x", "y"], _unit(1, 16))


def test_hnsw_recall_against_exact() -> None:
    vecs, queries = _unit(5000, 32, seed=3), _unit(100, 32, seed=4)
    ids = [str(i) for i in range(5000)]
    exact, hnsw = vector_index.create("exact", 32), vector_index.create("hnsw", 32)
    exact.add(ids, vecs)
    hnsw.add(ids, vecs)
    truth = [[d for d, _ in r] for r in exact.search(queries, 10)]
    approx = [[d for d, _ in r] for r in hnsw.search(queries, 10)]
    assert ann_recall(approx, truth) >= 0.95  # default ef_search 128 on random data


def test_unknown_engine() -> None:
    from embedlake.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown"):
        vector_index.create("annoy", 4)


@pytest.mark.parametrize(
    "share", [0.01, 0.5]
)  # HNSW: a selective filter is scanned, a broad one walked
def test_a_filter_returns_the_exact_top_k_of_the_allowed_ids(engine: str, share: float) -> None:
    n = 3000
    idx = _make(engine)
    vecs = _unit(n, 16, seed=3)
    ids = [f"d{i}" for i in range(n)]
    idx.add(ids, vecs)
    idx.remove(["d0"])
    rng = np.random.default_rng(4)
    allowed = {ids[i] for i in rng.choice(n, int(n * share), replace=False)} | {"d0", "nowhere"}
    queries = _unit(20, 16, seed=5)
    got = idx.search(queries, 10, allowed)
    truth = vector_index.create("exact", 16)
    live = sorted(allowed - {"d0", "nowhere"})
    truth.add(live, vecs[[int(i[1:]) for i in live]])
    expected = truth.search(queries, 10)
    assert all(len(row) == 10 for row in got)
    assert all(d in allowed and d != "d0" for row in got for d, _ in row)
    assert ann_recall(expected, got) >= 0.95
    assert idx.search(queries[:1], 10, set()) == [[]]


def test_ids_and_stored_vectors(engine: str) -> None:
    idx = _make(engine)
    vecs = _unit(30, 16, seed=6)
    idx.add([str(i) for i in range(30)], vecs)
    idx.remove(["3"])
    assert sorted(idx.ids(), key=int) == [str(i) for i in range(30) if i != 3]
    stored = idx.vector("7")
    assert stored is not None and np.allclose(stored, vecs[7], atol=1e-6)
    assert idx.vector("3") is None and idx.vector("missing") is None
