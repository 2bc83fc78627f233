"""Placing the points a map was not fitted on: this tree against another commit, same run.

A release's map fits UMAP on ``[map] fit_sample`` documents (50,000) and places every other one at
the weighted mean of its nearest fitted points (``reduce.projection.place``): at ten million
documents that is 9,950,000 placements. Here: seeded clustered 50-d points (the map's
``pca_dims``), ``--fitted`` of them with seeded random map positions standing for the fit (what
placing costs does not depend on where the fitted points lie), ``--placed`` others placed with
``place_k`` 15. Each side runs in its own process, from this tree or, with ``--against REV``, from
a checkout of ``REV`` (a git worktree first on ``PYTHONPATH``), alternated round by round; each
reports the seconds of building the neighbour graph and of placing, and the two sides' positions
are compared (they must agree).

    .venv/bin/python bench/map_place.py --placed 1000000 --against HEAD~1 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import median, table, write_result
from _common.children import child_result
from _common.timing import alternated
from _common.trees import env_for, worktree

DIMS, CLUSTERS, K = 50, 200, 15


def points(n: int, seed: int) -> np.ndarray:
    """``n`` points around ``CLUSTERS`` seeded centres (the same centres for every seed)."""
    centres = np.random.default_rng(0).normal(size=(CLUSTERS, DIMS))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(CLUSTERS, size=n)] + 0.5 * rng.normal(size=(n, DIMS))
    return x.astype(np.float32)


def child(fitted: int, placed: int, out: Path) -> dict[str, Any]:
    import embedlake
    from embedlake.reduce import projection

    sample, rest = points(fitted, seed=1), points(placed, seed=2)
    coords = np.random.default_rng(3).uniform(-1, 1, size=(fitted, 2)).astype(np.float32)
    started = time.perf_counter()
    near = projection.neighbours(sample)
    graph = time.perf_counter() - started
    started = time.perf_counter()
    positions = projection.place(rest, near, coords, K)
    seconds = time.perf_counter() - started
    np.save(out, positions)
    return {
        "embedlake": str(Path(embedlake.__file__).parent),
        "graph_s": round(graph, 2),
        "place_s": round(seconds, 2),
        "per_point_us": round(seconds / placed * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fitted", type=int, default=50_000)
    parser.add_argument("--placed", type=int, default=1_000_000)
    parser.add_argument("--against", metavar="REV", help="also place with this commit's code")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("FITTED", "PLACED", "OUT"), help="internal")
    args = parser.parse_args()
    if args.child:
        fitted, placed, out = args.child
        print(json.dumps(child(int(fitted), int(placed), Path(out))))
        return
    runs: dict[str, list[dict[str, Any]]] = {"this": []}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        trees: dict[str, Path | None] = {"this": None}
        if args.against:
            trees["before"] = stack.enter_context(worktree(args.against))
            runs["before"] = []
        for r in range(args.rounds):
            for side in alternated(list(trees), r):
                out = tmp / f"{side}.npy"
                result = child_result(
                    __file__,
                    "--child",
                    str(args.fitted),
                    str(args.placed),
                    str(out),
                    env=env_for(trees[side]),
                )
                print(f"  {side:<7} {result}", flush=True)
                runs[side].append(result)
        positions = {side: np.load(tmp / f"{side}.npy") for side in trees}
    rows = [
        [side, median([x["graph_s"] for x in rs]), median([x["place_s"] for x in rs])]
        for side, rs in runs.items()
    ]
    print(table(["side", "graph s", "place s"], rows))
    payload: dict[str, Any] = {"fitted": args.fitted, "placed": args.placed, "runs": runs}
    payload["against"] = args.against
    if args.against:
        pairs = zip(runs["this"], runs["before"], strict=True)
        payload["place_speedup"] = median([b["place_s"] / a["place_s"] for a, b in pairs])
        payload["max_position_difference"] = float(
            np.abs(positions["this"] - positions["before"]).max()
        )
        print(
            f"placing: before ÷ this = {payload['place_speedup']:.2f}× (median of rounds); "
            f"positions differ by at most {payload['max_position_difference']:.2e}"
        )
    write_result(f"map_place_{args.placed}", payload)


if __name__ == "__main__":
    main()
