"""Quantised exact search: int8 and binary codes with fp32 rescoring (``index/quantize.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedlake import index as vector_index
from embedlake.config import CONFIG_FILE, IndexSettings, Settings
from embedlake.errors import ConfigError
from embedlake.evaluate.metrics import ann_recall
from embedlake.index import quantize
from embedlake.index.exact import ExactIndex
from embedlake.search.build import index_params
from embedlake.workspace import Workspace

DIM = 384


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 100 centres, the noise as large as the centre (harder than MiniLM
    vectors: binary codes keep 0.98 of their top 10 at rescore 10, 0.90 of these)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, DIM), dtype=np.float32)
    x = centres[rng.integers(0, 100, n)] + rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, np.ndarray, list[list[str]]]:
    vectors = _clustered(20_200, seed=1)
    docs, queries = vectors[:20_000], vectors[20_000:]
    ids = [f"d{i}" for i in range(len(docs))]
    exact = vector_index.create("exact", DIM)
    exact.add(ids, docs)
    truth = [[d for d, _ in row] for row in exact.search(queries, 10)]
    return ids, docs, queries, truth


def _recall(index: ExactIndex, queries: np.ndarray, truth: list[list[str]]) -> float:
    return ann_recall([[d for d, _ in row] for row in index.search(queries, 10)], truth)


# measured: int8 0.978 without rescoring and 1.000 with, binary 0.256 and 0.897
@pytest.mark.parametrize(
    ("quantization", "rescore", "floor"),
    [("int8", 0, 0.95), ("int8", 10, 0.99), ("binary", 10, 0.85)],
)
def test_recall_at_10_against_fp32(
    data: tuple[list[str], np.ndarray, np.ndarray, list[list[str]]],
    quantization: str,
    rescore: int,
    floor: float,
) -> None:
    ids, docs, queries, truth = data
    index = ExactIndex(DIM, quantization=quantization, rescore=rescore)
    index.add(ids, docs)
    assert _recall(index, queries, truth) >= floor


def test_rescoring_returns_exact_scores_and_raises_recall(
    data: tuple[list[str], np.ndarray, np.ndarray, list[list[str]]],
) -> None:
    ids, docs, queries, truth = data
    plain = ExactIndex(DIM, quantization="binary", rescore=0)
    plain.add(ids, docs)
    rescored = ExactIndex(DIM, quantization="binary", rescore=10)
    rescored.add(ids, docs)
    assert _recall(rescored, queries, truth) > _recall(plain, queries, truth) + 0.3
    by_id = {doc_id: n for n, doc_id in enumerate(ids)}
    for doc_id, score in rescored.search(queries[:3], 10)[0]:
        assert score == pytest.approx(float(docs[by_id[doc_id]] @ queries[0]), abs=1e-6)
    # without rescoring, a binary score is the cosine of the two sign vectors
    for doc_id, score in plain.search(queries[:1], 10)[0]:
        signs = np.sign(docs[by_id[doc_id]]) @ np.sign(queries[0]) / DIM
        assert score == pytest.approx(signs, abs=1e-6)


def test_rescore_ranks_each_querys_own_candidates_up_to_its_first_empty_slot() -> None:
    """Many queries at once (each row of candidates read at its own offset), lists of every
    length, ids past the end: the exact top k of each list as NumPy computes it."""
    rng = np.random.default_rng(3)
    vectors, queries = _clustered(500, seed=1), _clustered(40, seed=2)
    candidates = np.stack([rng.permutation(500)[:30] for _ in range(40)])  # distinct, as walks
    ends = rng.integers(0, 31, size=40)
    for row, end in enumerate(ends):
        candidates[row, end:] = -1 if row % 2 else 500  # -1 or past the end: no more
    scores, rows = quantize.rescore(queries, vectors, candidates, 10)
    for row, end in enumerate(ends):
        cand = candidates[row, :end]
        exact = vectors[cand] @ queries[row]
        top = np.argsort(-exact, kind="stable")[:10]
        assert rows[row, : len(top)].tolist() == cand[top].tolist()
        assert np.allclose(scores[row, : len(top)], exact[top], atol=1e-5)
        assert (rows[row, len(top) :] == -1).all()
    with pytest.raises(ValueError, match="queries against"):
        quantize.rescore(queries[:, :8], vectors, candidates, 10)


@pytest.mark.parametrize(("quantization", "bytes_per_vector"), [("int8", DIM), ("binary", DIM / 8)])
def test_saved_codes_are_loaded_not_recomputed(
    tmp_path: Path, quantization: str, bytes_per_vector: float
) -> None:
    docs, queries = _clustered(2_000, seed=2), _clustered(5, seed=3)
    ids = [f"d{i}" for i in range(len(docs))]
    index = ExactIndex(DIM, quantization=quantization, rescore=0)
    index.add(ids, docs)
    index.remove(["d0"])
    before = index.search(queries, 10)
    index.save(tmp_path)
    # spoil the fp32 vectors on disk: a loaded index that re-encoded them would answer otherwise
    np.save(tmp_path / "vectors.npy", np.zeros((1_999, DIM), dtype=np.float32))
    loaded = vector_index.load("exact", tmp_path)
    assert isinstance(loaded, ExactIndex)
    assert loaded.params() == {"quantization": quantization, "rescore": 0}
    assert loaded.search(queries, 10) == before
    # in memory: the codes; the fp32 vectors stay memory-mapped
    assert loaded.codes_nbytes == 1_999 * bytes_per_vector
    assert isinstance(loaded._vectors, np.memmap)
    assert vector_index.load("exact", tmp_path, rescore=4).params()["rescore"] == 4


def test_int8_scales_per_dimension_and_refits_as_the_index_grows() -> None:
    docs = _clustered(3_000, seed=4)
    index = ExactIndex(DIM, quantization="int8")
    index.add([f"a{i}" for i in range(10)], docs[:10] * 0.1)  # a small, atypical first batch
    codes = index._codes
    assert isinstance(codes, quantize.Int8Codes) and codes.scale is not None
    first = codes.scale.copy()
    assert (np.abs(codes.codes()).max(axis=0) == 127).all()  # every dimension uses its range
    index.add([f"b{i}" for i in range(2_990)], docs[10:])
    assert codes.fitted_on == 3_000 and not np.allclose(codes.scale, first)
    assert (np.abs(codes.codes()).max(axis=0) == 127).all()
    assert len(codes) == 3_000


def test_a_removed_or_filtered_out_vector_is_never_returned() -> None:
    docs = _clustered(5_000, seed=5)
    ids = [f"d{i}" for i in range(len(docs))]
    for quantization in ("int8", "binary"):
        index = ExactIndex(DIM, quantization=quantization)
        index.add(ids, docs)
        index.remove(ids[:2_500:2])
        hits = index.search(docs[:20], 10)
        assert all(int(d[1:]) % 2 or int(d[1:]) >= 2_500 for row in hits for d, _ in row)
        allowed = set(ids[::3])
        hits = index.search(docs[:20], 10, allowed)
        assert all(len(row) == 10 and {d for d, _ in row} <= allowed for row in hits)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"quantization": "int4"}, "quantization='int4' is unknown"),
        ({"rescore": -1}, "rescore=-1"),
        ({"rescore": "many"}, "rescore='many'"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        vector_index.create("exact", 8, **options)


def test_settings_refuse_bad_values_and_other_engines(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('[index]\nquantization = "pq"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"index\.quantization"):
        Settings.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"index\.rescore"):
        Settings.load(tmp_path, environ={"EMBEDLAKE_INDEX__QUANTIZATION": "int8",
                                         "EMBEDLAKE_INDEX__RESCORE": "-2"})  # fmt: skip
    assert IndexSettings().rescore is None  # tuned at build, from DEFAULT_RESCORE untuned
    environ = {"EMBEDLAKE_INDEX__QUANTIZATION": "int8"}
    with (
        Workspace.init(tmp_path / "ws", environ=environ) as ws,
        pytest.raises(ConfigError, match="exact engine only"),
    ):
        index_params(ws, "hnsw")  # the default engine, auto
    environ["EMBEDLAKE_INDEX__ENGINE"] = "exact"
    with Workspace.init(tmp_path / "ws2", environ=environ) as ws:
        assert index_params(ws, "exact")["quantization"] == "int8"
        assert index_params(ws, "exact")["rescore"] == quantize.DEFAULT_RESCORE
