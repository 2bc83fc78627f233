"""The 2D map: embedlake's projection vs umap-learn, placement vs umap-learn's transform, and the
map page's time to first render in headless Chromium.

Four parts, one script each; this one runs those ``--parts`` names and writes bench/results/map.json:

1. ``projection`` (bench/map_projection.py): embedlake's PCA-50 + seeded UMAP (or PCA) vs
   umap-learn's defaults at ~10k and ~100k points: wall seconds and trustworthiness@15;
2. ``placement`` (bench/map_placement.py): half of 10k points placed by `projection.place` vs
   umap-learn's `transform`;
3. ``page`` (bench/map_page.py): the map page's time to first render and bytes fetched;
4. ``screenshot`` (bench/map_page.py): docs/img/map-20newsgroups.png.

The vectors and workspaces: bench/map_data.py (cached under /tmp/embedlake-bench-map,
EMBEDLAKE_BENCH_MAP_CACHE; delete it to rebuild). The machine is shared: every timing waits until
no other benchmark script or test run is running and is redone (up to 3 tries) when one started
meanwhile or other processes took more than 15% of the machine's CPU; each records its load
averages and CPU shares (servers, browsers and commands this script starts count as its own work).
The first UMAP call in a process compiles numba code: a warm-up fit of every code path (seeded and
not, NN-descent, transform; ~50 s here) runs first and is not counted.

    .venv/bin/python bench/map.py [--parts projection,placement,page,screenshot]
        [--sizes 10000,100000] [--loads 3] [--keep]

``--keep`` keeps the parts of bench/results/map.json that this run does not measure
(``measured_at`` says when each part was). From scratch the run takes ~20 minutes on 2 cores,
most of it the MiniLM embedding of 20newsgroups; with the caches, ~4 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import map_data
import map_page
import map_placement
import map_projection
from embedlake.config import MapSettings
from embedlake.reduce import projection

from _common import RESULTS, write_result
from _common.load import WAITED


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="projection,placement,page,screenshot")
    parser.add_argument("--sizes", default="10000,100000", help="projection sizes: 10000, 100000")
    parser.add_argument("--loads", type=int, default=3, help="warm page loads after the cold one")
    parser.add_argument(
        "--keep", action="store_true", help="keep the other parts of bench/results/map.json"
    )
    return parser.parse_args(argv)


def start_payload(keep: bool, parts: set[str]) -> dict[str, Any]:
    """The previous bench/results/map.json with ``--keep`` (its machine moved to earlier_runs)."""
    payload: dict[str, Any] = {}
    previous = RESULTS / "map.json"
    if keep and previous.exists():
        payload = json.loads(previous.read_text())
        payload.setdefault("earlier_runs", []).append(payload.pop("machine"))
    payload["cache"] = str(map_data.CACHE)
    payload["parts"] = sorted(set(payload.get("parts", [])) | parts)
    # the map code measured (it changes: say which version the numbers belong to)
    payload["projection_py_md5"] = hashlib.md5(
        Path(projection.__file__).read_bytes(), usedforsecurity=False
    ).hexdigest()
    payload.setdefault("workspaces", {})
    return payload


class Run:
    """One run of some parts: the payload, saved after each part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.parts = set(args.parts.split(","))
        self.sizes = [int(s) for s in args.sizes.split(",")]
        self.loads = args.loads
        self.started = time.perf_counter()
        self.payload = start_payload(args.keep, self.parts)

    def save(self) -> None:
        self.payload["wall_seconds"] = time.perf_counter() - self.started  # of the latest run
        self.payload["waited_seconds"] = WAITED[0]
        when = datetime.now(UTC).isoformat(timespec="seconds")
        self.payload.setdefault("measured_at", {}).update({part: when for part in self.parts})
        write_result("map", self.payload)

    def vectors(self, ws20: dict[str, Any]) -> dict[int, np.ndarray]:
        out = {}
        if 10_000 in self.sizes or "placement" in self.parts:
            out[10_000] = map_data.minilm_10k(Path(ws20["folder"]))
        if 100_000 in self.sizes and "projection" in self.parts:
            out[100_000], self.payload["lsa"] = map_data.lsa_big(map_data.big_parts())
        return out

    def projection(self, vectors: dict[int, np.ndarray]) -> np.ndarray | None:
        """Part 1; embedlake's UMAP coordinates of the 10k points, if measured."""
        fit_all_10k = None
        self.payload.setdefault("projection", {})
        for size in sorted(v for v in vectors if v in self.sizes):
            result = map_projection.project(f"{size // 1000}k", vectors[size])
            coords = result.pop("embedlake_umap_coords")
            if size == 10_000:
                fit_all_10k = coords
            self.payload["projection"][str(size)] = result
            self.save()
        return fit_all_10k

    def placement(self, x: np.ndarray, fit_all_10k: np.ndarray | None) -> None:
        """Part 2, against the map fitted on all 10k points (fitted here if part 1 did not)."""
        if fit_all_10k is None:
            ids = [str(i) for i in range(10_000)]
            fit_all_10k = projection.fit(ids, map_projection.pca50(x), MapSettings()).coords
        self.payload["placement"] = map_placement.placement(x, fit_all_10k)
        self.save()

    def projection_parts(self, ws20: dict[str, Any]) -> None:
        print(
            f"UMAP warm-up (numba compilation): {map_projection.warm_up():.1f} s, not counted",
            flush=True,
        )
        vectors = self.vectors(ws20)
        fit_all_10k = self.projection(vectors) if "projection" in self.parts else None
        if "placement" in self.parts:
            self.placement(vectors[10_000], fit_all_10k)

    def page_parts(self, ws20: dict[str, Any]) -> None:
        """Parts 3 and 4 in one headless Chromium."""
        from playwright.sync_api import sync_playwright

        ws100 = None
        if "page" in self.parts:
            ws100 = map_data.workspace(map_data.WS100, map_data.big_parts(), "lsa", map_data.ENV100)
            self.payload["workspaces"]["100k-lsa"] = ws100
            self.payload["page"] = {}
        commands: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=map_page.CHROMIUM, args=map_page.BROWSER_ARGS
            )
            try:
                self.in_browser(browser, ws20, ws100, commands)
            finally:
                browser.close()
        self.payload["serve_commands"] = commands

    def in_browser(self, browser: Any, ws20: dict, ws100: dict | None, commands: list[str]) -> None:
        if ws100 is not None:
            print("page load, ~100k points (LSA, map method pca)", flush=True)
            with map_page.serve(Path(ws100["folder"]), map_data.ENV100, commands) as url:
                self.payload["page"]["100k-lsa"] = map_page.page_loads(browser, url, self.loads)
        print("page load, 20newsgroups (MiniLM, map method umap)", flush=True)
        with map_page.serve(Path(ws20["folder"]), {}, commands) as url:
            if "page" in self.parts:
                loads = map_page.page_loads(browser, url, self.loads)
                self.payload["page"]["20newsgroups-minilm"] = loads
            if "screenshot" in self.parts:
                self.payload["screenshot"] = map_page.screenshot(browser, url)


def report(payload: dict[str, Any]) -> None:
    """The tables, from whatever parts the payload holds."""
    map_projection.print_table(payload)
    map_placement.print_table(payload)
    map_page.print_tables(payload)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    map_data.CACHE.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    ws20 = map_data.workspace(map_data.WS20, [("20newsgroups", "")], "minilm", {})
    run.payload["workspaces"]["20newsgroups-minilm"] = ws20
    if run.parts & {"projection", "placement"}:
        run.projection_parts(ws20)
    if run.parts & {"page", "screenshot"}:
        run.page_parts(ws20)
    print()
    report(run.payload)
    print(
        f"\nwall time {time.perf_counter() - run.started:.0f} s, of which {WAITED[0]:.0f} s "
        "waiting for other benchmarks or test runs to finish"
    )
    run.save()


if __name__ == "__main__":
    main()
