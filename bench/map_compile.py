"""What a fresh process pays to fit its first map: umap-learn's functions compiled by numba in it,
or kept on disk by numba (``reduce/projection.py``'s ``_keep_compiled``).

Each run is a new Python process that fits the map of ``--points`` random unit vectors (the way a
release fits its map: ``projection._umap``, the release's map settings), once; its CPU seconds for
the fit (umap-learn's import included) are reported. The anchor is the same process with the
functions compiled in it, as before (``_keep_compiled`` replaced by a no-op), in the same rounds,
the two sides taking turns. Both sides share one ``NUMBA_CACHE_DIR``, filled by a first run
before the rounds. Then the first process of all: each side on an empty ``NUMBA_CACHE_DIR`` of its
own (``--cold-rounds``, taking turns), where everything compiles, pynndescent's ``cache=True``
functions too, and the kept side also writes what it compiled.

    .venv/bin/python bench/map_compile.py [--rounds 5] [--cold-rounds 2] [--points 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import median, table, write_result
from _common.load import loadavg
from _common.timing import paired, rotated

CHILD = """
import json, sys, time
import numpy as np
from embedlake.config import MapSettings
from embedlake.reduce import projection
if sys.argv[2] == "compiled":
    projection._keep_compiled = lambda: 0  # the anchor: compiled in this process, as before
x = np.random.default_rng(0).standard_normal((int(sys.argv[1]), 64)).astype("float32")
x /= np.linalg.norm(x, axis=1, keepdims=True)
started = time.process_time()
coords = projection._umap(x, MapSettings())
print(json.dumps({"cpu": time.process_time() - started, "first": coords[0].tolist()}))
"""
SIDES = ("compiled", "kept")


def fit(points: int, side: str, env: dict[str, str]) -> dict[str, object]:
    argv = [sys.executable, "-c", CHILD, str(points), side]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold-rounds", type=int, default=2)
    parser.add_argument("--points", type=int, default=300)
    args = parser.parse_args()
    load = [loadavg()]
    cold: dict[str, list[float]] = {side: [] for side in SIDES}
    firsts: set[str] = set()
    for round_ in range(args.cold_rounds):
        for side in rotated(list(SIDES), round_):
            with tempfile.TemporaryDirectory() as empty:
                run = fit(args.points, side, {**os.environ, "NUMBA_CACHE_DIR": empty})
            cold[side].append(float(run["cpu"]))  # type: ignore[arg-type]
            firsts.add(json.dumps(run["first"]))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        fit(args.points, "kept", env)  # fills the cache both sides read
        cpu: dict[str, list[float]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            for side in rotated(list(SIDES), round_):
                run = fit(args.points, side, env)
                cpu[side].append(float(run["cpu"]))  # type: ignore[arg-type]
                firsts.add(json.dumps(run["first"]))
        load.append(loadavg())
    speedup = median(paired(cpu["compiled"], cpu["kept"]))
    rows = [
        ["first process of all, compiled in it (anchor)", f"{median(cold['compiled']):.2f}"],
        ["first process of all, kept (compiles, writes)", f"{median(cold['kept']):.2f}"],
        ["a later process, compiled in it (anchor)", f"{median(cpu['compiled']):.2f}"],
        ["a later process, kept on disk by numba", f"{median(cpu['kept']):.2f}"],
    ]
    print(f"{args.points} points, {args.rounds} rounds; CPU seconds of the first fit, medians")
    print(table(["a fresh process's first map fit", "CPU s"], rows))
    print(f"compiled ÷ kept: {speedup:.1f}× (median of the rounds' ratios)")
    print(f"the same map on every run: {len(firsts) == 1}")
    write_result(
        f"map_compile-{args.points}",
        {
            "points": args.points,
            "rounds": args.rounds,
            "cold_rounds": args.cold_rounds,
            "cold_cpu_s": cold,
            "cpu_s": cpu,
            "compiled_over_kept": speedup,
            "same_map": len(firsts) == 1,
            "load": load,
        },
    )


if __name__ == "__main__":
    main()
