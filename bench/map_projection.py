"""Claim: embedlake's 2D projection (PCA-50 + seeded UMAP, fitted on ≤ 50k points, the rest
placed; or PCA) against umap-learn's defaults on the same vectors, at ~10k (MiniLM, 20newsgroups)
and ~100k (LSA, every collection + reuters repeated) points: wall seconds and trustworthiness@15.

On the same vectors: (a) embedlake = scikit-learn PCA to 50 dims (as a release's reducer does) +
`projection.fit` with the default `MapSettings` (UMAP, seeded, one thread, fitted on at most 50,000
points, the rest *placed*); (b) umap-learn's defaults, `umap.UMAP().fit_transform(vectors)` on the
full vectors (no seed: both cores); (c) embedlake with method "pca". Trustworthiness@15 on one
seeded sample of 2,000 points against the full-dimensional vectors. Vectors: bench/map_data.py.
Every timing waits for a quiet machine (`_common.load.timed_quietly`). The first UMAP call in a
process compiles numba code: a warm-up fit of every code path runs first and is not counted.
Run through bench/map.py (this script alone is ``bench/map.py --parts projection``):

    .venv/bin/python bench/map_projection.py [--sizes 10000,100000] [--keep]
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness

from embedlake.config import MapSettings
from embedlake.reduce import projection

from _common import table
from _common.load import quiet, timed_quietly

SAMPLE = 2000  # points trustworthiness is measured on
K = 15  # trustworthiness@K (= UMAP's n_neighbors)


def umap_module() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap  # type: ignore[import-untyped]
    return umap


def warm_up() -> float:
    """Compile umap-learn's numba code paths once (not counted in any timing)."""
    umap = umap_module()
    quiet()
    started = time.perf_counter()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4500, 24)).astype(np.float32)  # ≥ 4096: NN-descent, not exact
    seeded = umap.UMAP(n_neighbors=15, metric="cosine", random_state=1, n_jobs=1).fit(x)
    seeded.transform(x[:200])
    umap.UMAP().fit_transform(x)
    return time.perf_counter() - started


def said(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct warnings a fit raised (but the ones about parallelism and TensorFlow)."""
    texts = [
        " ".join(str(w.message).split())
        for w in caught
        if not issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    quiet_ones = ("n_jobs", "TensorFlow", "tensorflow")
    return sorted({t for t in texts if not any(q in t for q in quiet_ones)})


def trust(x: np.ndarray, y: np.ndarray, sample: np.ndarray) -> float:
    return float(trustworthiness(x[sample], y[sample], n_neighbors=K))


def pca50(x: np.ndarray) -> np.ndarray:
    return PCA(50, random_state=0).fit_transform(x).astype(np.float32)


def sample_of(n: int) -> np.ndarray:
    """The seeded sample of ``n`` points trustworthiness is measured on."""
    return np.sort(np.random.default_rng(0).choice(n, min(SAMPLE, n), replace=False))


def neighbour_search() -> Callable[[np.ndarray], projection.Neighbours]:
    """The nearest-neighbour search `projection.fit` places points with."""
    return projection.neighbours


def place_cost(reduced: np.ndarray, coords: np.ndarray) -> dict[str, Any]:
    """Re-run the placement step of `fit` alone: neighbour search vs the per-point weighting."""
    settings = MapSettings()
    x = np.ascontiguousarray(reduced[:, : settings.pca_dims], dtype=np.float32)
    n = len(x)
    fitted = np.sort(np.random.default_rng(settings.seed).choice(n, settings.fit_sample, False))
    rest = np.setdiff1d(np.arange(n), fitted)
    hits, search_s, run = timed_quietly(
        lambda: neighbour_search()(x[fitted])(x[rest], settings.place_k)
    )
    placed, weigh_s, _ = timed_quietly(
        lambda: projection.place(x[rest], lambda q, k: hits, coords[fitted], settings.place_k)
    )
    return {
        "points": len(rest),
        "search_seconds": search_s,
        "weighting_seconds": weigh_s,
        "max_abs_diff_vs_fit": float(np.abs(placed - coords[rest]).max()),
        "search": neighbour_search().__name__,
        **run,
    }


class Projections:
    """The methods on the same vectors ``x``; ``out`` collects seconds, trustworthiness and
    fitted/placed counts per method (and embedlake's UMAP coordinates, for placement)."""

    def __init__(self, label: str, x: np.ndarray) -> None:
        self.label, self.x = label, x
        self.ids = [str(i) for i in range(len(x))]
        self.sample = sample_of(len(x))
        self.out: dict[str, Any] = {"points": len(x), "dims": int(x.shape[1]), "methods": {}}

    def record(
        self, name: str, coords: np.ndarray, seconds: float, run: dict, **extra: Any
    ) -> None:
        t = trust(self.x, coords, self.sample)
        self.out["methods"][name] = {"seconds": seconds, "trustworthiness": t, **run, **extra}
        print(f"  {self.label} {name:<22} {seconds:8.1f} s  T@{K} {t:.4f}", flush=True)
        for w in extra.get("warnings", []):
            print(f"    warning: {w}", flush=True)

    def _fit(self, method: str) -> tuple[np.ndarray, projection.Projection, float, list[str]]:
        started = time.perf_counter()
        reduced = pca50(self.x)
        pca_s = time.perf_counter() - started
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = projection.fit(self.ids, reduced, MapSettings(method=method))
        return reduced, fitted, pca_s, said(caught)

    def embedlake(self, method: str) -> None:
        """PCA-50 + `projection.fit` with ``method``; for UMAP, the placement's cost too."""
        (reduced, fitted, pca_s, warned), seconds, run = timed_quietly(lambda: self._fit(method))
        meta, name = fitted.meta, f"embedlake {method}"
        self.record(
            name, fitted.coords, seconds, run, pca50_seconds=pca_s, fitted=meta["fitted"],
            warnings=warned,
        )  # fmt: skip
        self.out["methods"][name].update(placed=meta["placed"], fit_meta_seconds=meta["seconds"])
        if method == "umap":
            self.out["embedlake_umap_coords"] = fitted.coords
            if meta["placed"]:
                self.out["methods"][name]["place"] = place_cost(reduced, fitted.coords)

    def umap_defaults(self) -> None:
        """umap-learn's defaults on the full vectors."""
        umap = umap_module()

        def fit() -> tuple[np.ndarray, list[str]]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                coords = np.asarray(umap.UMAP().fit_transform(self.x), dtype=np.float32)
            return coords, said(caught)

        (coords, warned), seconds, run = timed_quietly(fit)
        self.record("umap-learn defaults", coords, seconds, run, warnings=warned)


def project(label: str, x: np.ndarray) -> dict[str, Any]:
    """The three methods on the same vectors: seconds, trustworthiness, fitted/placed counts."""
    methods = Projections(label, x)
    methods.embedlake("umap")
    methods.umap_defaults()
    methods.embedlake("pca")
    return methods.out


def print_table(payload: dict[str, Any]) -> None:
    rows = [
        [
            f"{result['points']:,}",
            name,
            f"{m['fitted']:,} + {m['placed']:,} placed" if "fitted" in m else "all",
            m["seconds"],
            m["trustworthiness"],
        ]
        for result in payload.get("projection", {}).values()
        for name, m in result["methods"].items()
    ]
    if rows:
        print(table(["points", "method", "fitted", "seconds", f"trustworthiness@{K}"], rows))
        print()


if __name__ == "__main__":
    from map import main

    main(["--parts", "projection", *sys.argv[1:]])
