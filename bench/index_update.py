"""A few documents arriving in a large served corpus: the release's index updated with them
(search/update.py, what ``embed-new`` does now) against built again from every vector (what it did
before), same workspace, same run.

Setup (once, kept in ``--keep``): bench/scale.py's synthetic documents (~1 KB of real sentences),
ingested, and a published LSA release (``embedlake release --model lsa``). Each round: ``--arrive``
new documents are ingested (``--id-prefix``) and embedded; then, each in its own process and in
alternated order, (a) the release's index updated (``serving.reindex``: the coverage diff, load,
remove, add, save, record) and (b) an index built from all the vectors the same way the release's
was (``build_index`` with its PCA, if any; the release is not moved to it). Reported: seconds,
peak RSS over the process's base, and recall@10 of each index against exact search over the same
vectors, for 200 documents' vectors as queries.

    .venv/bin/python bench/index_update.py --docs 100000 --arrive 1000 --rounds 2 --keep /tmp/upd
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import median, table, write_result
from _common.children import child_result
from _common.timing import alternated

EMBEDLAKE = [sys.executable, "-m", "embedlake"]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(ws_path: Path, how: str) -> dict[str, Any]:
    from embedlake import Workspace
    from embedlake.reduce.store import load_reducer
    from embedlake.releases import serving
    from embedlake.search.build import build_index

    with Workspace.open(ws_path) as ws:
        release_id = ws.catalog.releases.alias(ws.settings.gate.alias)
        assert release_id is not None, "no published release"
        release = ws.catalog.releases.get(release_id)
        model = ws.catalog.registry.model_by_id(release.model_id)
        base = _peak_mib()
        started = time.perf_counter()
        if how == "update":
            index_id = serving.reindex(ws, model.ref, release.chunker)
        else:
            reducer = load_reducer(ws, release)
            index_id = build_index(ws, model, reducer=reducer, chunker=release.chunker).index_id
        seconds = time.perf_counter() - started
        assert index_id is not None
        record = ws.catalog.registry.index(index_id)
        return {
            "how": how,
            "index": index_id,
            "updated_from": record.params.get("updated_from"),
            "vectors": record.n_vectors,
            "seconds": round(seconds, 2),
            "peak_over_base_mib": round(_peak_mib() - base),
            "recall": _recall(ws, index_id, reducer=load_reducer(ws, release)),
        }


def _recall(ws: Any, index_id: int, reducer: Any) -> float:
    """recall@10 of the index against exact search over its own vectors, 200 of them as
    queries (the first hit, the query itself, left out of both)."""
    from embedlake.search.load import load_index

    index = load_index(ws, ws.catalog.registry.index(index_id))
    keys = sorted(index.ids())
    matrix = np.stack([index.vector(k) for k in keys]).astype(np.float32)
    picks = np.random.default_rng(0).choice(len(keys), 200, replace=False)
    queries = matrix[picks]
    exact = np.argsort(-(queries @ matrix.T), axis=1)[:, 1:11]
    found = index.search(queries, 11)
    hits = 0
    for row, truth in zip(found, exact, strict=True):
        hits += len({d for d, _ in row[1:]} & {keys[j] for j in truth})
    return round(hits / (10 * len(queries)), 4)


def _cli(*args: str) -> None:
    subprocess.run([*EMBEDLAKE, *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--arrive", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="workspace folder, reused when it exists")
    parser.add_argument("--child", nargs=2, metavar=("WS", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return

    from scale import generate

    root = args.keep or Path(tempfile.mkdtemp(prefix="embedlake-update-"))
    root.mkdir(parents=True, exist_ok=True)
    ws = root / "ws"
    if not ws.exists():
        generate(root / "docs.jsonl", args.docs)
        _cli("init", str(ws))
        _cli("ingest", str(ws), str(root / "docs.jsonl"))
        started = time.perf_counter()
        _cli("release", str(ws), "--model", "lsa")
        print(f"setup: release built in {time.perf_counter() - started:.0f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"update": [], "build": []}
    done = len(list(root.glob("arrive-*.jsonl")))
    for r in range(args.rounds):
        tag = f"arrive-{done + r}"
        generate(root / f"{tag}.jsonl", args.arrive, seed=100 + done + r)
        _cli("ingest", str(ws), str(root / f"{tag}.jsonl"), "--id-prefix", f"{tag}-")
        _cli("embed", str(ws), "--model", "lsa")
        for how in alternated(["build", "update"], r):
            runs[how].append(child_result(__file__, "--child", str(ws), how))
            print(f"round {r} {how}: {runs[how][-1]}", flush=True)
    ratio = median(
        [u["seconds"] / b["seconds"] for u, b in zip(runs["update"], runs["build"], strict=True)]
    )
    rows = [
        [
            how,
            f"{median([x['seconds'] for x in got]):.1f}",
            f"{max(x['peak_over_base_mib'] for x in got):,}",
            f"{median([x['recall'] for x in got]):.3f}",
        ]
        for how, got in runs.items()
    ]
    print(table(["index", "seconds (median)", "peak over base MiB", "recall@10"], rows))
    print(f"update ÷ build, seconds: {ratio:.3f} (median of rounds)")
    write_result(
        f"index_update_{args.docs}",
        {"docs": args.docs, "arrive": args.arrive, "runs": runs, "update_over_build": ratio},
    )


if __name__ == "__main__":
    main()
