"""The 2D projection: deterministic, normalised, neighbourhoods kept, late points placed well."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from embedlake.config import MapSettings
from embedlake.errors import InputError, NotFound
from embedlake.lake import open_lake
from embedlake.reduce import projection


def _clusters(
    n: int = 600, k: int = 6, dim: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 4
    labels = rng.integers(0, k, size=n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def _purity(coords: np.ndarray, labels: np.ndarray, rows: np.ndarray, ref: np.ndarray) -> float:
    """Share of ``rows`` whose nearest ``ref`` point on the map has the same label."""
    d = ((coords[rows, None, :] - coords[None, ref, :]) ** 2).sum(-1)
    return float((labels[ref][d.argmin(axis=1)] == labels[rows]).mean())


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_a_map_is_seeded_normalised_and_keeps_neighbourhoods(method: str) -> None:
    x, _ = _clusters()
    ids = [f"d{i}" for i in range(len(x))]
    settings = MapSettings(method=method, pca_dims=16)
    first = projection.fit(ids, x, settings)
    again = projection.fit(ids, x, settings)
    assert np.array_equal(first.coords, again.coords)  # same seed, same map
    assert first.coords.shape == (600, 2) and first.coords.dtype == np.float32
    assert np.abs(first.coords).max() == pytest.approx(1.0)
    assert first.meta["method"] == method and first.meta["fitted"] == 600
    assert trustworthiness(x[:, :16], first.coords, n_neighbors=15) > 0.85
    other = projection.fit(ids, x, MapSettings(method=method, pca_dims=16, seed=7))
    assert method == "pca" or not np.array_equal(first.coords, other.coords)


def test_points_past_the_sample_are_placed_among_their_neighbours() -> None:
    x, labels = _clusters(n=900)
    settings = MapSettings(method="umap", pca_dims=16, fit_sample=500)
    fitted = projection.fit([str(i) for i in range(900)], x, settings)
    assert (fitted.meta["fitted"], fitted.meta["placed"]) == (500, 400)
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(900, 500, replace=False))
    rest = np.setdiff1d(np.arange(900), sample)
    # a placed point lands among fitted points of its own cluster
    assert _purity(fitted.coords, labels, rest, sample) > 0.95


def test_placing_in_batches_places_every_point_as_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = _clusters(n=300)
    near = projection.neighbours(x[:200])
    coords = projection._normalise(
        np.random.default_rng(1).normal(size=(200, 2)).astype(np.float32)
    )
    whole = projection.place(x[200:], near, coords, 8)
    asked: list[int] = []

    def counted(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        asked.append(len(queries))
        return near(queries, k)

    monkeypatch.setattr(projection, "PLACE_BATCH", 30)  # 100 points: 30, 30, 30 and 10
    assert np.array_equal(projection.place(x[200:], counted, coords, 8), whole)
    assert asked == [30, 30, 30, 10] and np.abs(whole).sum(axis=1).min() > 0


def test_placing_weights_each_neighbour_as_umap_does() -> None:
    """The batch's weights against the formula point by point: exp(-(d - d_nearest) / sigma),
    sigma the mean spread; a point with fewer than k neighbours uses those it has, one with none
    stays at the origin."""
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    rows = np.array([[0, 1, 2], [3, 1, -1], [2, -1, -1], [-1, -1, -1]], dtype=np.int64)
    dist = np.array([[0.1, 0.2, 0.4], [0.3, 0.5, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]])

    def given(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return rows[: len(queries)], dist[: len(queries)]

    placed = projection.place(np.zeros((4, 2), np.float32), given, coords, 3)
    for n in range(3):
        r = rows[n][rows[n] >= 0]
        spread = dist[n][: len(r)] - dist[n][: len(r)].min()
        w = np.exp(-spread / (spread.mean() or 1.0))
        expected = (w[:, None] * coords[r]).sum(axis=0) / w.sum()
        assert placed[n] == pytest.approx(expected, abs=1e-6)
    assert placed[2] == pytest.approx(coords[2]) and placed[3].tolist() == [0.0, 0.0]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    x, _ = _clusters(n=50)
    fitted = projection.fit([f"d{i}" for i in range(50)], x, MapSettings(method="pca"))
    fitted.save(lake, "releases/r1")
    loaded = projection.Projection.load(lake, "releases/r1")
    assert loaded.ids == fitted.ids and np.array_equal(loaded.coords, fitted.coords)
    assert loaded.meta == fitted.meta
    with pytest.raises(NotFound, match="embedlake map"):
        projection.Projection.load(lake, "releases/none")


def test_bad_input() -> None:
    x, _ = _clusters(n=20)
    with pytest.raises(InputError, match="19 ids for 20 vectors"):
        projection.fit([str(i) for i in range(19)], x, MapSettings())
    with pytest.raises(InputError, match="at least 3"):
        projection.fit(["a", "b"], x[:2], MapSettings())
    tiny = projection.fit([str(i) for i in range(10)], x[:10], MapSettings(method="umap"))
    assert tiny.meta["method"] == "pca"  # too few points for UMAP's neighbourhoods
    line = projection.fit([str(i) for i in range(20)], x[:, :1], MapSettings(method="pca"))
    assert line.coords.shape == (20, 2) and not line.coords[:, 1].any()  # 1-d vectors: a line


FIT_IN_A_NEW_PROCESS = """
import json, sys, numpy as np, umap.umap_
from embedlake.config import MapSettings
from embedlake.reduce import projection
rng = np.random.default_rng(1)
x = (rng.normal(size=(3, 8)) * 4)[rng.integers(0, 3, size=60)] + rng.normal(size=(60, 8))
coords = projection._umap(x.astype("float32"), MapSettings())
f = umap.umap_.smooth_knn_dist
print(json.dumps({"hits": sum(f.stats.cache_hits.values()), "misses": sum(f.stats.cache_misses.values()),
                  "first": coords[0].tolist()}))
"""


def test_a_new_process_fits_its_map_with_the_functions_numba_kept() -> None:
    """umap-learn compiles most of its functions in every process (they are not ``cache=True``):
    most of a fresh process's first fit here (bench/map_compile.py). Kept on disk by numba, the
    second process compiles none of them: a cache hit, no miss (the first process may compile, if
    no other has)."""
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", FIT_IN_A_NEW_PROCESS],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[1]["hits"] >= 1 and runs[1]["misses"] == 0, runs
    assert runs[0]["first"] == runs[1]["first"]  # the same map, compiled or loaded


def test_where_numba_cannot_keep_a_function_the_map_still_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No folder numba may write to (it raises at ``enable_caching``), or a numba without the
    method: nothing is kept, and the fit goes on, compiled in the process as before."""
    from numba.core.dispatcher import Dispatcher

    with warnings.catch_warnings():  # umap-learn warns at import that TensorFlow is absent
        warnings.simplefilter("ignore", ImportWarning)
        import umap  # noqa: F401  # the modules whose functions are kept

    def no_folder(self: Dispatcher) -> None:
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(Dispatcher, "enable_caching", no_folder)
    assert projection._keep_compiled.__wrapped__() == 0
    monkeypatch.delattr(Dispatcher, "enable_caching")
    assert projection._keep_compiled.__wrapped__() == 0
    x, _ = _clusters(n=60)
    coords = projection._umap(x, MapSettings())
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
