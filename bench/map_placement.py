"""Claim: embedlake's placement of new points on a fitted map (`projection.place`) against
umap-learn's `UMAP.transform`, at 10k MiniLM points (20newsgroups): seconds and
trustworthiness@15 of the placed points and of all points, beside the map fitted on all of them.

UMAP (embedlake's settings) is fitted on a seeded half; the other half is positioned by
`projection.place` (nearest fitted neighbours in PCA-50, found the way `fit` finds them) and by
umap-learn's `transform`. Every timing waits for a quiet machine. Run through bench/map.py (this
script alone is ``bench/map.py --parts placement``):

    .venv/bin/python bench/map_placement.py [--keep]
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from embedlake.config import MapSettings
from embedlake.reduce import projection
from map_projection import SAMPLE, K, neighbour_search, pca50, sample_of, trust, umap_module

from _common import table
from _common.load import timed_quietly


def fit_half(reduced: np.ndarray, rows: np.ndarray, settings: MapSettings) -> Any:
    """umap-learn's UMAP with embedlake's settings, fitted on ``reduced[rows]``."""
    umap = umap_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return umap.UMAP(
            n_neighbors=settings.n_neighbors,
            min_dist=settings.min_dist,
            metric="cosine",
            random_state=settings.seed,
            n_jobs=1,
        ).fit(reduced[rows])


def placers(
    model: Any, reduced: np.ndarray, fit_rows: np.ndarray, rest: np.ndarray, base: np.ndarray
) -> dict[str, Callable[[], np.ndarray]]:
    """The two ways of positioning ``rest`` against the map fitted on ``fit_rows``."""
    settings = MapSettings()

    def embedlake_place() -> np.ndarray:
        neighbours = neighbour_search()(reduced[fit_rows])
        return projection.place(reduced[rest], neighbours, base, settings.place_k)

    def umap_transform() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(model.transform(reduced[rest]), dtype=np.float32)

    return {"embedlake place": embedlake_place, "umap-learn transform": umap_transform}


def placement(x: np.ndarray, fit_all: np.ndarray) -> dict[str, Any]:
    """Half fitted (UMAP with embedlake's settings), half placed two ways."""
    n = len(x)
    reduced = pca50(x)
    order = np.random.default_rng(0).permutation(n)
    fit_rows, rest = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    sample = np.sort(np.random.default_rng(0).choice(len(rest), min(SAMPLE, len(rest)), False))
    everywhere = sample_of(n)
    model, fit_s, fit_run = timed_quietly(lambda: fit_half(reduced, fit_rows, MapSettings()))
    base = np.asarray(model.embedding_, dtype=np.float32)
    out: dict[str, Any] = {
        "points": n,
        "fitted": len(fit_rows),
        "placed": len(rest),
        "fit_seconds": fit_s,
        "fit_run": fit_run,
        "search": neighbour_search().__name__,
        "trustworthiness_placed_in_fit_all": trust(x[rest], fit_all[rest], sample),
        "trustworthiness_all_in_fit_all": trust(x, fit_all, everywhere),
        "methods": {},
    }
    print(f"  placement: UMAP fit on {len(fit_rows):,} points {fit_s:.1f} s", flush=True)
    for name, fn in placers(model, reduced, fit_rows, rest, base).items():
        placed, seconds, run = timed_quietly(fn)
        layout = np.zeros((n, 2), dtype=np.float32)
        layout[fit_rows], layout[rest] = base, placed
        m = out["methods"][name] = {
            "seconds": seconds,
            "trustworthiness_placed": trust(x[rest], placed, sample),
            "trustworthiness_all": trust(x, layout, everywhere),
            **run,
        }
        print(
            f"  placement: {name:<21} {seconds:6.2f} s  T@{K} placed "
            f"{m['trustworthiness_placed']:.4f}  all {m['trustworthiness_all']:.4f}",
            flush=True,
        )
    return out


def print_table(payload: dict[str, Any]) -> None:
    if "placement" not in payload:
        return
    pl = payload["placement"]
    rows = [
        [name, m["seconds"], m["trustworthiness_placed"], m["trustworthiness_all"]]
        for name, m in pl["methods"].items()
    ]
    rows.append(
        [
            "(reference: UMAP fitted on all 10k)",
            None,
            pl["trustworthiness_placed_in_fit_all"],
            pl["trustworthiness_all_in_fit_all"],
        ]
    )
    print(
        f"placement: {pl['placed']:,} of {pl['points']:,} MiniLM points positioned against a "
        f"UMAP fitted on the other {pl['fitted']:,} ({pl['fit_seconds']:.1f} s)"
    )
    print(table(["placed by", "seconds", f"T@{K} placed", f"T@{K} all points"], rows))
    print()


if __name__ == "__main__":
    from map import main

    main(["--parts", "placement", *sys.argv[1:]])
