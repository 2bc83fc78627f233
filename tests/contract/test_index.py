"""The index contract: every engine passes the same behaviour; the approximate ones (HNSW,
pgvector, exact search over int8 or binary codes) also against exact search.

pgvector runs against a real PostgreSQL with pgvector (the session's ``postgres`` server, one fresh
database for this module); its tests skip where that server cannot be started (CI requires it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedlake import index as vector_index
from embedlake.errors import InputError
from embedlake.evaluate.metrics import ann_recall
from embedlake.index import ENGINES, VectorIndex, check_vectors, tune


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _normed(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def pg_url(postgres: Any) -> str:
    return str(postgres.database())


@dataclass
class Engine:
    """An engine under test: how to create and load its indexes (pgvector: in which database)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    # recall@10 floor against exact search on this suite's random 16-32 dimensional vectors
    min_recall: float = 0.95
    made: list[VectorIndex] = field(default_factory=list)

    def make(self, dim: int = 16, **params: Any) -> VectorIndex:
        params = {"m": 16, "ef_construction": 100, "ef_search": 64, **params}
        return self._keep(vector_index.create(self.name, dim, **self.params, **params))

    def load(self, folder: Path, **overrides: Any) -> VectorIndex:
        return self._keep(vector_index.load(self.name, folder, **self.params, **overrides))

    def _keep(self, index: VectorIndex) -> VectorIndex:
        self.made.append(index)
        return index

    def close(self) -> None:
        for index in self.made:
            close = getattr(index, "close", None)
            if close is not None:
                close()


# Variants of an engine by index options: (engine, options, recall floor). Binary codes keep one
# bit of each dimension: on random vectors of 16-32 dimensions the default oversampling (k × 10
# candidates re-scored) keeps about half of the top 10 (0.48 and 0.64 here); on real 384-dim
# embeddings it keeps 0.98 (tests/unit/test_quantize.py and docs/decisions/0013).
QUANTISED = {
    "exact-int8": ("exact", {"quantization": "int8"}, 0.95),
    "exact-binary": ("exact", {"quantization": "binary"}, 0.45),
}


# IVF over RaBitQ codes before its build tunes nprobe: 16 of 78 lists hold 0.79 of the top 10 of
# structureless random 32-dimensional vectors (the tuning test below brings it to the target)
UNTUNED = {"rabitq": 0.75}


def _engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    floor = UNTUNED.get(str(request.param), 0.95)
    name, options, min_recall = QUANTISED.get(str(request.param), (request.param, {}, floor))
    params = {"url": request.getfixturevalue("pg_url")} if name == "pgvector" else {}
    engine = Engine(name, {**params, **options}, min_recall)
    yield engine
    engine.close()


@pytest.fixture(params=sorted(ENGINES) + sorted(QUANTISED))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from _engine(request)


@pytest.fixture(params=sorted(set(ENGINES) - {"exact"}) + sorted(QUANTISED))
def approximate(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The approximate engines, checked against exact search."""
    yield from _engine(request)


def _ids(results: list[list[tuple[str, float]]]) -> list[list[str]]:
    return [[d for d, _ in row] for row in results]


def _make(engine: Engine, dim: int = 16) -> VectorIndex:
    return engine.make(dim)


def test_each_vector_finds_itself_first(engine: Engine) -> None:
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


def test_remove_and_readd(engine: Engine) -> None:
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


def test_save_and_load_give_the_same_results(engine: Engine, tmp_path: Path) -> None:
    idx = _make(engine)
    vecs = _unit(300, 16, seed=1)
    idx.add([str(i) for i in range(300)], vecs)
    idx.remove(["5"])
    queries = _unit(10, 16, seed=2)
    before = idx.search(queries, 10)
    idx.save(tmp_path)
    loaded = engine.load(tmp_path, ef_search=64)
    assert len(loaded) == 299
    after = loaded.search(queries, 10)
    assert [[d for d, _ in r] for r in after] == [[d for d, _ in r] for r in before]


@pytest.fixture(params=["exact", "hnsw", "rabitq", "rabitq-hnsw"])
def updatable(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The engines whose saved index a streaming update loads, changes and saves again
    (search/update.py; pgvector keeps its vectors in the catalog and is built again)."""
    yield from _engine(request)


def test_a_loaded_index_takes_changes_that_survive_saving(
    updatable: Engine, tmp_path: Path
) -> None:
    idx = updatable.make()
    vecs = _unit(300, 16, seed=1)
    idx.add([str(i) for i in range(300)], vecs)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    idx.save(tmp_path / "a")
    loaded = updatable.load(tmp_path / "a", mutable=True)
    fresh = _unit(2, 16, seed=9)
    loaded.remove(["5", "6"])
    loaded.add(["7", "new"], fresh)  # "7" changed, "new" added
    loaded.save(tmp_path / "b")
    again = updatable.load(tmp_path / "b")
    assert len(again) == 299
    assert set(again.ids()) == {str(i) for i in range(300)} - {"5", "6"} | {"new"}
    np.testing.assert_allclose(again.vector("7"), fresh[0], atol=1e-6)
    assert [row[0][0] for row in again.search(fresh, 1)] == ["7", "new"]
    assert all(d not in {"5", "6"} for row in again.search(vecs[:20], 20) for d, _ in row)


def test_scores_stay_exact_through_adds_removals_and_a_compacting_save(
    updatable: Engine, tmp_path: Path
) -> None:
    """Each search scores with the rows as they are now: after an add, and after a save that
    renumbers them without the removed ones."""
    idx = updatable.make()
    vecs = _unit(300, 16, seed=3)
    ids = [str(i) for i in range(300)]
    idx.add(ids[:200], vecs[:200])
    queries = vecs[200:210]  # not in the index yet
    assert [len(row) for row in idx.search(queries, 5)] == [5] * 10
    idx.add(ids[200:], vecs[200:])
    idx.remove(ids[:150])  # half the rows: past the share at which a save compacts
    for step in ("after the add", "after the save"):
        for query, wanted, row in zip(queries, ids[200:210], idx.search(queries, 5), strict=True):
            assert row[0][0] == wanted, step
            for doc_id, score in row:
                assert score == pytest.approx(float(vecs[int(doc_id)] @ query), abs=1e-5), step
        idx.save(tmp_path)


def test_hnsw_keeps_a_few_removals_as_tombstones_and_compacts_many(tmp_path: Path) -> None:
    """Saving after a small update keeps the graph (and the removed vectors, skipped at search);
    past ``COMPACT_SHARE`` removed, it builds the graph again without them."""
    from embedlake.index.hnsw import COMPACT_SHARE, REMOVED, HnswIndex

    idx = HnswIndex(16, m=16, ef_construction=100, ef_search=64)
    idx.add([str(i) for i in range(100)], _unit(100, 16))
    for name in ("few", "many"):
        (tmp_path / name).mkdir()
    idx.remove(["1", "2"])
    idx.save(tmp_path / "few")
    assert (tmp_path / "few" / REMOVED).is_file()
    assert HnswIndex.load(tmp_path / "few")._index.ntotal == 100
    idx.remove([str(i) for i in range(3, 3 + int(COMPACT_SHARE * 100))])
    idx.save(tmp_path / "many")
    assert not (tmp_path / "many" / REMOVED).exists()
    compacted = HnswIndex.load(tmp_path / "many")
    assert compacted._index.ntotal == len(compacted) == 100 - 2 - int(COMPACT_SHARE * 100)


def test_rabitq_hnsw_keeps_a_few_removals_as_tombstones_and_compacts_many(tmp_path: Path) -> None:
    """As ``hnsw``: a few removals stay in the saved graph, skipped by the codes' own removals;
    past ``COMPACT_SHARE``, saving builds the graph again without them."""
    from embedlake.index.rabitq import REMOVED
    from embedlake.index.rabitq_hnsw import RabitqHnswIndex

    share = RabitqHnswIndex.COMPACT_SHARE
    idx = RabitqHnswIndex(16, m=16, ef_construction=100, ef_search=64)
    vecs = _unit(200, 16)
    idx.add([str(i) for i in range(200)], vecs)
    for name in ("few", "many"):
        (tmp_path / name).mkdir()
    idx.remove(["1", "2"])
    idx.save(tmp_path / "few")
    assert (tmp_path / "few" / REMOVED).is_file()
    few = RabitqHnswIndex.load(tmp_path / "few")
    assert few._index.num_stored_points == 200 and len(few) == 198
    assert few.search(vecs[:1], 1)[0][0][0] == "0"
    assert all(d not in {"1", "2"} for row in few.search(vecs[:10], 50) for d, _ in row)
    idx.remove([str(i) for i in range(3, 3 + int(share * 200))])
    idx.save(tmp_path / "many")
    assert not (tmp_path / "many" / REMOVED).exists()
    compacted = RabitqHnswIndex.load(tmp_path / "many")
    left = 200 - 2 - int(share * 200)
    assert compacted._index.num_stored_points == len(compacted) == left


def test_empty_index_and_k_larger_than_size(engine: Engine) -> None:
    idx = _make(engine)
    assert idx.search(_unit(2, 16), 3) == [[], []]
    idx.add(["a", "b"], _unit(2, 16))
    assert len(idx.search(_unit(1, 16), 10)[0]) == 2


def _one_bad_row(value: float) -> np.ndarray:
    rows = _unit(3, 16)
    rows[1, 5] = value
    return rows


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((1, 15)),
        np.full((1, 16), np.nan),
        np.full((1, 16), np.inf),
        np.array([[np.inf, -np.inf] + [0.0] * 14]),  # +inf and -inf in one row
        _one_bad_row(np.nan),
        _one_bad_row(-np.inf),
        np.full((1, 16), 1e30),  # finite, but its squared norm overflows float32
    ],
)
def test_bad_vectors_are_refused(engine: Engine, bad: np.ndarray) -> None:
    idx = _make(engine)
    with pytest.raises(InputError):
        idx.add(["x"], bad)
    with pytest.raises(InputError):
        idx.search(bad, 1)
    with pytest.raises(InputError, match="ids for"):
        idx.add(["x", "y"], _unit(1, 16))


def test_rows_in_range_are_accepted_though_their_squares_together_overflow() -> None:
    """The check is one dot over every value: past float32 there, each row is looked at alone,
    so a batch is refused only for a row of its own, with the reason named."""
    rows = np.full((100, 16), 3e18, dtype=np.float32)  # a row's squared norm 1.4e38, all 1.4e40
    assert not np.isfinite(np.vdot(rows, rows))
    assert check_vectors(rows, 16) is rows
    rows[40, 3] = 1e30
    with pytest.raises(InputError, match="squared norm overflows"):
        check_vectors(rows, 16)
    rows[40, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        check_vectors(rows, 16)


@pytest.mark.parametrize(
    ("engine", "options", "named"),
    [
        ("rabitq", {"nprobe": 0}, "nprobe=0"),
        ("rabitq", {"bits": 10}, "bits=10"),
        ("rabitq-hnsw", {"m": 1}, "m=1"),
        ("rabitq-hnsw", {"ef_search": 0}, "ef_search=0"),
        ("rabitq-hnsw", {"bits": 0}, "bits=0"),
    ],
)
def test_bad_index_options_are_refused_by_name(
    engine: str, options: dict[str, int], named: str
) -> None:
    with pytest.raises(InputError, match=named):
        vector_index.create(engine, 16, **options)


def test_recall_against_exact(approximate: Engine) -> None:
    vecs, queries = _unit(5000, 32, seed=3), _unit(100, 32, seed=4)
    ids = [str(i) for i in range(5000)]
    exact = vector_index.create("exact", 32)
    index = approximate.make(32, m=32, ef_construction=200, ef_search=128)  # the defaults
    exact.add(ids, vecs)
    index.add(ids, vecs)
    truth, approx = _ids(exact.search(queries, 10)), _ids(index.search(queries, 10))
    assert ann_recall(approx, truth) >= approximate.min_recall  # default ef_search 128 / rescore


def test_the_effort_is_tuned_to_a_recall_target_that_unseen_queries_meet(
    approximate: Engine, tmp_path: Path
) -> None:
    """The build's tuning (``index/tune.py``): the smallest effort of the ladder that reaches
    the target on the held-back sample is set, saved with the index, and met by new queries."""
    target, n = 0.9, 5000
    vecs, queries = _unit(n, 32, seed=3), _unit(200, 32, seed=6)
    ids = [str(i) for i in range(n)]
    index = approximate.make(32)
    tuning = tune.add_tuned(index, ids, vecs, target, sample=500)
    assert tuning is not None and len(index) == n and tuning.sample == 500
    assert tuning.reached and tuning.recall >= target
    found = tune.knob(index)
    assert found is not None
    knob, ladder = found
    assert getattr(index, knob) == index.params()[knob] == tuning.value
    # the ladder was climbed from its bottom: every cheaper effort was measured
    assert [e for e in ladder if e < tuning.value] == list(tuning.curve)[:-1]
    exact = vector_index.create("exact", 32)
    exact.add(ids, vecs)
    truth = _ids(exact.search(queries, 10))
    # within the sample's error (500 queries): on these vectors HNSW's ef 10 gets 0.70
    assert ann_recall(_ids(index.search(queries, 10)), truth) >= target - 0.03
    index.save(tmp_path)
    loaded = approximate.load(tmp_path)
    assert getattr(loaded, knob) == tuning.value
    assert all(getattr(loaded, name) == value for name, value in tuning.settled.items())


def test_spare_hits_come_at_the_effort_of_the_needed_ones(engine: Engine) -> None:
    """What the searcher asks: k + 10 hits, its effort sized for k (``effort_hits``), the ten
    more only room for deleted documents. An HNSW candidate list (faiss, pgvector) of ef ≥ k + 10
    holds them already, so the top k are exactly those of a search for k alone."""
    vecs, queries = _unit(3000, 16, seed=8), _unit(40, 16, seed=9)
    ids = [str(i) for i in range(3000)]
    index = engine.make(16)
    index.add(ids, vecs)
    exact = vector_index.create("exact", 16)
    exact.add(ids, vecs)
    spared = index.search(queries, 20, effort_hits=10)
    assert all(len(row) == 20 for row in spared)
    top = [row[:10] for row in spared]
    assert ann_recall(_ids(top), _ids(exact.search(queries, 10))) >= engine.min_recall
    if engine.name in ("hnsw", "pgvector"):  # ef 64 either way; without it: ef 128
        assert _ids(top) == _ids(index.search(queries, 10))
        assert vector_index.effort_for(64, 20, 10) == 64 and vector_index.effort_for(64, 20) == 128
        assert vector_index.effort_for(10, 20, 10) == 20  # a list long enough for every hit


def _tie_recall(index: VectorIndex, queries: np.ndarray, vecs: np.ndarray) -> float:
    """Recall@10 against exact search, a hit scoring at least the exact 10th counting (copies)."""
    kth = -np.partition(-(queries @ vecs.T), 9, axis=1)[:, 9]
    answers = index.search(queries, 10)
    hits = sum(s >= t - 1e-5 for row, t in zip(answers, kth, strict=True) for _, s in row)
    return hits / (10 * len(queries))


def test_an_effort_tuned_with_query_like_vectors_meets_the_target_on_queries() -> None:
    """Every document twice (near copies, as in patents): a held-back document is found at once
    beside its copy, and an effort tuned on those alone leaves queries far short of the target.
    Query-like vectors of the held-back ids (``queries_for``; the build embeds spans of their
    text) make the tuning climb until queries meet it too."""
    dim, n, target = 32, 3000, 0.9
    rng = np.random.default_rng(0)
    centres = _normed(rng.standard_normal((60, dim)))
    base = _normed(centres[rng.integers(0, 60, n)] + 0.35 * rng.standard_normal((n, dim)))
    vecs = np.concatenate([base, base])
    ids = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    row_of = {key: row for row, key in enumerate(ids)}

    def query_like(rows: np.ndarray, seed: int) -> np.ndarray:  # between documents
        noise = np.random.default_rng(seed).standard_normal(rows.shape) / np.sqrt(dim)
        return _normed(rows + 1.2 * noise)

    def queries_for(keys: Any) -> np.ndarray:
        made = query_like(vecs[[row_of[k] for k in keys]], 1)
        made[:10] = 0  # no text to make a query of: left out
        return made

    fresh = query_like(base[rng.integers(0, n, 300)], 2)
    alone = vector_index.create("hnsw", dim, m=8, ef_construction=40)
    by_documents = tune.add_tuned(alone, ids, vecs, target, sample=500)
    both = vector_index.create("hnsw", dim, m=8, ef_construction=40)
    tuning = tune.add_tuned(both, ids, vecs, target, sample=500, queries_for=queries_for)
    assert by_documents is not None and tuning is not None
    assert by_documents.reached and _tie_recall(alone, fresh, vecs) < target - 0.15
    assert tuning.sets == {"documents": 500, "spans": 490}
    assert tuning.reached and min(c[tuning.value] for c in tuning.curves.values()) >= target
    assert tuning.value > by_documents.value and len(both) == 2 * n
    assert _tie_recall(both, fresh, vecs) >= target - 0.03  # within the sample's error
    assert tuning.describe()["curves"]["spans"][str(tuning.value)] >= target


def test_nothing_is_tuned_without_a_knob_or_a_sample() -> None:
    vecs = _unit(200, 16)
    ids = [str(i) for i in range(200)]
    exact = vector_index.create("exact", 16)
    assert tune.add_tuned(exact, ids, vecs, 0.95) is None and len(exact) == 200  # recall is 1
    small = vector_index.create("hnsw", 16, ef_search=77)
    assert tune.add_tuned(small, ids[:99], vecs[:99], 0.95) is None  # 19 to hold back: too few
    off = vector_index.create("hnsw", 16, ef_search=77)
    assert tune.add_tuned(off, ids, vecs, 0.0) is None  # target 0: tuning off
    assert len(small) == 99 and len(off) == 200 and small.params()["ef_search"] == 77


@pytest.mark.parametrize(
    ("engine", "module"), [("hnsw", "hnsw"), ("rabitq", "rabitq"), ("rabitq-hnsw", "rabitq")]
)
def test_a_broad_filter_walks_the_index_with_a_selector_and_is_never_short(
    engine: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a filter takes when it keeps too many rows to scan (forced here: no scan),
    with tombstones, and answered exactly when the walk comes back short."""
    monkeypatch.setattr(f"embedlake.index.{module}._SCAN_MIN", 0)
    monkeypatch.setattr(f"embedlake.index.{module}._SCAN_SHARE", 0.0)
    n, vecs = 4000, _unit(4000, 32, seed=8)
    ids = [f"d{i}" for i in range(n)]
    index = vector_index.create(engine, 32)
    tune.add_tuned(index, ids, vecs, 0.95)
    index.remove(["d1", "d2"])
    allowed = {f"d{i}" for i in range(0, n, 3)} | {"d1"}
    queries = _unit(30, 32, seed=9)
    got = index.search(queries, 10, allowed)
    exact = vector_index.create("exact", 32)
    live = sorted(allowed - {"d1"})
    exact.add(live, vecs[[int(i[1:]) for i in live]])
    assert all(len(row) == 10 and {d for d, _ in row} <= allowed - {"d1"} for row in got)
    assert ann_recall(_ids(got), _ids(exact.search(queries, 10))) >= 0.8
    few = {"d1", "d3", "d6"}  # a filter of fewer live rows than k: all of them, none short
    assert sorted(d for d, _ in index.search(queries[:1], 10, few)[0]) == ["d3", "d6"]


@pytest.mark.parametrize("engine", ["rabitq", "rabitq-hnsw"])
def test_a_broad_filter_is_answered_by_the_walk_not_the_exact_fallback(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allowed candidates of a walk are re-scored wherever the walk ranked them: a filtered
    out one before them does not end their list (re-scoring stops at a row's first empty
    slot), so the walk's answer is full and no query falls back to an exact scan."""
    monkeypatch.setattr("embedlake.index.rabitq._SCAN_MIN", 0)
    monkeypatch.setattr("embedlake.index.rabitq._SCAN_SHARE", 0.0)
    n, vecs = 4000, _unit(4000, 32, seed=8)
    ids = [f"d{i}" for i in range(n)]
    index: Any = vector_index.create(engine, 32, rescore=4)  # 4 × 2 × k candidates: ~40 kept
    index.add(ids, vecs)
    exact_calls: list[int] = []
    scan = index._exact
    monkeypatch.setattr(index, "_exact", lambda q, *a: exact_calls.append(len(q)) or scan(q, *a))
    allowed = {f"d{i}" for i in range(0, n, 2)}
    got = index.search(_unit(30, 32, seed=9), 10, allowed)
    assert all(len(row) == 10 and {d for d, _ in row} <= allowed for row in got)
    assert sum(exact_calls) <= 3, exact_calls  # a rare query may still find too few


def test_graph_codes_are_residuals_of_the_clusters_means_and_ivf_lists_of_unit_centres() -> None:
    """rabitq-hnsw's centres only shape its codes: the clusters' means, each row assigned to
    its nearest by distance (the smallest residuals; decision 0032). rabitq probes its lists by
    inner product with the query: unit centres."""
    vecs = _unit(3000, 32, seed=12)  # spread unit vectors: a cluster's mean is far inside
    graph, ivf = vector_index.create("rabitq-hnsw", 32), vector_index.create("rabitq", 32)
    for index in (graph, ivf):
        index.add([str(i) for i in range(len(vecs))], vecs)
    centres: Any = graph._centres
    vecs = np.pad(vecs, ((0, 0), (0, centres.shape[1] - 32)))  # codes of 32-d are padded to 64
    assert np.linalg.norm(centres, axis=1).max() < 0.9
    nearest = np.argmin(((vecs[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    means = np.stack([vecs[nearest == c].mean(0) for c in range(len(centres))])
    assert np.abs(means - centres).max() < 0.1  # k-means' centres: near their rows' means
    assert np.allclose(np.linalg.norm(ivf._centres, axis=1), 1.0, atol=1e-4)


def test_many_lists_are_trained_in_two_levels_and_found_by_a_graph_as_well_and_the_same_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From ``LARGE_NLIST`` lists on (lowered here to 32, so that 8,000 vectors suffice), rabitq
    trains its lists in two levels and finds each vector's list by a graph over the centres:
    search keeps the flat build's recall at a given nprobe, and two builds are the same."""
    from embedlake.index import rabitq

    centres = _unit(200, 32, seed=20)
    rng = np.random.default_rng(21)
    vecs = _normed(centres[rng.integers(200, size=8000)] + 0.13 * rng.normal(size=(8000, 32)))
    ids, queries = [str(i) for i in range(len(vecs))], vecs[:300] + 0.01
    exact = vector_index.create("exact", 32)
    exact.add(ids, vecs)
    truth = _ids(exact.search(queries, 10))

    def built(large: int) -> Any:
        monkeypatch.setattr(rabitq, "LARGE_NLIST", large)
        index = vector_index.create("rabitq", 32, nlist=64, nprobe=8)
        index.train(vecs[::4], len(vecs))
        for start in range(0, len(vecs), 2000):
            index.add(ids[start : start + 2000], vecs[start : start + 2000])
        return index

    flat, first, second = built(10_000), built(32), built(32)
    assert flat._finder is None and first._finder is not None
    assert 60 <= first.nlist <= 64 and len(np.unique(first._centres, axis=0)) == first.nlist
    assert np.array_equal(first._centres, second._centres)
    got = {
        name: _ids(index.search(queries, 10)) for name, index in (("flat", flat), ("two", first))
    }
    assert got["two"] == _ids(second.search(queries, 10))
    recall = {name: ann_recall(rows, truth) for name, rows in got.items()}
    assert recall["two"] >= recall["flat"] - 0.03 and recall["two"] > 0.9, recall


def test_unknown_engine() -> None:
    from embedlake.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown"):
        vector_index.create("annoy", 4)


@pytest.mark.parametrize(
    "share", [0.01, 0.5]
)  # HNSW: a selective filter is scanned, a broad one walked
def test_a_filter_returns_the_exact_top_k_of_the_allowed_ids(engine: Engine, share: float) -> None:
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
    # by id: engines that compute scores in another order differ in the last float32 bits
    assert ann_recall(_ids(expected), _ids(got)) >= engine.min_recall
    assert idx.search(queries[:1], 10, set()) == [[]]


def test_ids_and_stored_vectors(engine: Engine) -> None:
    idx = _make(engine)
    vecs = _unit(30, 16, seed=6)
    idx.add([str(i) for i in range(30)], vecs)
    idx.remove(["3"])
    assert sorted(idx.ids(), key=int) == [str(i) for i in range(30) if i != 3]
    stored = idx.vector("7")
    assert stored is not None and np.allclose(stored, vecs[7], atol=1e-6)
    assert idx.vector("3") is None and idx.vector("missing") is None
