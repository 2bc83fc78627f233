"""Claim: the map page's time to first render in headless Chromium, at ~100k points (LSA, map
method pca) and 18,846 points (20newsgroups, MiniLM, UMAP), and the bytes it fetches; also writes
the README screenshot of the 20newsgroups map coloured by newsgroup (docs/img/map-20newsgroups.png).

`embedlake serve` in open mode, a fresh browser context per load; navigation start →
`body[data-state=ready]` (points drawn) and the bytes of the points, ids and labels responses. The
first load meets a cold server (it builds the map on first request); the median is over the warm
loads after it. Anchor: a bare GET of each map endpoint (httpx, warm). The workspaces:
bench/map_data.py. Run through bench/map.py (this script alone is
``bench/map.py --parts page,screenshot``):

    .venv/bin/python bench/map_page.py [--loads 3] [--keep]
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from map_data import CACHE

from _common import median, table
from _common.load import timed_quietly
from _common.servers import EMBEDLAKE, free_port, running

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "img" / "map-20newsgroups.png"
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 900}
OPEN = {"EMBEDLAKE_API__AUTH": "open"}
SERVER_GETS = ("index", "points", "ids", "labels")  # /v1/map, /v1/map/{release}/...
DATA_KINDS = ("points", "ids", "labels")

# records performance.now() (ms since navigation start) when the page says its points are drawn
READY_JS = """
(() => {
  const mark = () => {
    if (!window.__readyAt && document.body && document.body.dataset.state === "ready") {
      window.__readyAt = performance.now();
    }
  };
  new MutationObserver(mark).observe(document, {
    subtree: true, attributes: true, attributeFilter: ["data-state"],
  });
})();
"""
COLLECT_JS = """
() => ({
  ready: window.__readyAt,
  points: window.embedlakeMap.views()[0].ids.length,
  marks: Object.fromEntries(performance.getEntriesByType("mark").map((m) => [m.name, m.startTime])),
  resources: performance.getEntriesByType("resource").map((e) => ({
    name: e.name, start: e.startTime, end: e.responseEnd, transfer: e.transferSize,
    encoded: e.encodedBodySize, decoded: e.decodedBodySize,
  })),
})
"""


@contextlib.contextmanager
def serve(ws: Path, env: dict[str, str], commands: list[str]) -> Iterator[str]:
    """`embedlake serve` (open mode) on a free loopback port; always stopped on the way out."""
    port = free_port()
    env = {**env, **OPEN}
    args = ["serve", str(ws), "--port", str(port)]
    commands.append(" ".join([*(f"{k}={v}" for k, v in env.items()), "embedlake", *args]))
    log = CACHE / f"serve-{ws.name}.log"
    with running([EMBEDLAKE, *args], port, log, timeout=180, env=env) as (url, _):
        yield url


def kind_of(url: str) -> str | None:
    """Which of the page's requests: the map index, or the points, ids or labels of a map."""
    if url.endswith("/v1/map"):
        return "index"
    for kind in DATA_KINDS:
        if f"/{kind}" in url and "/v1/map/" in url:
            return kind
    return None


def load_page(browser: Any, url: str) -> tuple[dict[str, Any], float]:
    """One load in a fresh context (fresh cache): what the page collected, and the wall seconds."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(READY_JS)
        started = time.perf_counter()
        page.goto(url + "/")
        page.wait_for_selector("body[data-state=ready]", timeout=600_000)
        wall = time.perf_counter() - started
        if errors:
            raise SystemExit(f"page errors: {errors}")
        return page.evaluate(COLLECT_JS), wall
    finally:
        context.close()


def one_load(browser: Any, url: str) -> dict[str, Any]:
    """Time to ready, and the requests, bytes and milliseconds of each kind of map request."""
    got, wall = load_page(browser, url)
    by_kind: dict[str, dict[str, float]] = {}
    for r in got["resources"]:
        kind = kind_of(r["name"])
        if kind is None:
            continue
        k = by_kind.setdefault(kind, {"requests": 0, "bytes": 0, "body_bytes": 0, "ms": 0.0})
        k["requests"] += 1
        k["bytes"] += r["transfer"]
        k["body_bytes"] += r["decoded"]
        k["ms"] += r["end"] - r["start"]
    data = [r for r in got["resources"] if kind_of(r["name"]) in DATA_KINDS]
    return {
        "ready_s": got["ready"] / 1000,
        "wall_s": wall,
        "points": got["points"],
        "first_map_request_s": min((r["start"] for r in data), default=0.0) / 1000,
        "last_map_response_s": max((r["end"] for r in data), default=0.0) / 1000,
        "by_kind": by_kind,
        # the page's own marks (app.js): points fetched, all data in, drawn; seconds
        "marks": {name.rsplit(":", 1)[-1]: at / 1000 for name, at in got["marks"].items()},
    }


def server_gets(url: str, release: str) -> dict[str, dict[str, Any]]:
    """The anchor: median seconds (of 5) and bytes of a bare GET of each map endpoint."""
    out: dict[str, Any] = {}
    for kind in SERVER_GETS:
        path = "/v1/map" if kind == "index" else f"/v1/map/{release}/{kind}"
        times, size = [], 0
        for _ in range(5):
            started = time.perf_counter()
            response = httpx.get(f"{url}{path}", timeout=120)
            times.append(time.perf_counter() - started)
            size = len(response.content)
        out[kind] = {"median_s": median(times), "bytes": size}
    return out


def page_loads(browser: Any, url: str, loads: int) -> dict[str, Any]:
    """One cold load and ``loads`` warm ones (on a quiet machine), and the bare GETs."""
    # a retry (another benchmark started meanwhile) meets a warm server in its first load too
    runs, _, run = timed_quietly(lambda: [one_load(browser, url) for _ in range(loads + 1)])
    for n, r in enumerate(runs):
        print(
            f"  load {n} ({'cold' if n == 0 else 'warm'}): ready {r['ready_s']:.2f} s, "
            f"{r['points']:,} points, last map response at {r['last_map_response_s']:.2f} s",
            flush=True,
        )
    warm = runs[1:]
    index = httpx.get(f"{url}/v1/map", timeout=60).json()
    release = next(r["id"] for r in index["releases"] if index["alias"] in r["aliases"])
    return {
        **run,
        "points": runs[0]["points"],
        "cold_ready_s": runs[0]["ready_s"],
        "warm_ready_s": [r["ready_s"] for r in warm],
        "median_warm_ready_s": median([r["ready_s"] for r in warm]),
        "runs": runs,
        "fields": index["fields"],
        "release": release,
        "server_get": server_gets(url, release),
    }


def screenshot(browser: Any, url: str) -> dict[str, Any]:
    """The 20newsgroups map coloured by newsgroup, saved as the README's screenshot."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-state=ready]", timeout=600_000)
        offered = page.eval_on_selector_all("#field option", "os => os.map((o) => o.value)")
        if "labels" not in offered:
            raise SystemExit(f"the page offers no 'labels' field to colour by: {offered}")
        started = time.perf_counter()
        page.select_option("#field", "labels")
        page.wait_for_function(
            "() => /rec\\.sport\\.hockey/.test(document.querySelector('.legend').textContent)",
            timeout=120_000,
        )
        recolour = time.perf_counter() - started
        rows = page.eval_on_selector_all(".legend div", "rs => rs.map((r) => r.textContent)")
        page.wait_for_timeout(1000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    finally:
        context.close()
    print(f"  screenshot: {SCREENSHOT} ({len(rows)} legend rows, recolour {recolour:.2f} s)")
    return {"path": str(SCREENSHOT.relative_to(ROOT)), "legend": rows, "recolour_s": recolour}


def load_row(name: str, r: dict[str, Any]) -> list[Any]:
    """Cold and warm times to ready and the median bytes of each data request."""
    warm = r["runs"][1:]
    by = {k: median([w["by_kind"].get(k, {}).get("bytes", 0) for w in warm]) for k in DATA_KINDS}
    return [
        name,
        f"{r['points']:,}",
        r["cold_ready_s"],
        r["median_warm_ready_s"],
        ", ".join(f"{s:.2f}" for s in r["warm_ready_s"]),
        *(f"{by[k] / 1e6:.2f}" for k in DATA_KINDS),
    ]


def timeline_row(name: str, r: dict[str, Any]) -> list[Any]:
    """Where a warm load's time goes, beside the bare GETs."""
    warm, got = r["runs"][1:], r["server_get"]
    return [
        name,
        median([w.get("first_map_request_s", 0.0) for w in warm]),
        median([w["last_map_response_s"] for w in warm]),
        median([w["ready_s"] - w["last_map_response_s"] for w in warm]),
        *(got[k]["median_s"] if k in got else None for k in SERVER_GETS),
    ]


def print_tables(payload: dict[str, Any]) -> None:
    pages = payload.get("page", {})
    if not pages:
        return
    headers = ["workspace", "points", "cold: ready s", "warm: median ready s", "warm runs"]
    headers += ["points MB", "ids MB", "labels MB"]
    print(table(headers, [load_row(name, r) for name, r in pages.items()]))
    print(
        "\nwhere a warm load's time goes (medians, seconds since navigation start; "
        "GET = a bare httpx GET of the server's, warm)"
    )
    headers = ["workspace", "first data request s", "last data response s", "then to ready s"]
    headers += [f"GET {k} s" for k in SERVER_GETS]
    print(table(headers, [timeline_row(name, r) for name, r in pages.items()]))


if __name__ == "__main__":
    from map import main

    main(["--parts", "page,screenshot", *sys.argv[1:]])
