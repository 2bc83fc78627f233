"""Three paths at a million documents, on a workspace `bench/scale.py --keep DIR` left (with a
published release): each in its own process, its wall seconds and peak RSS (``getrusage``) over
the process's base after opening the workspace.

- ``lacking``: ``coverage.lacking`` of the published release (the snapshot merged with the live
  documents);
- ``filter``: 20 held-out queries one at a time in process on the published release, without a
  filter and with one that matches every document (``{"source": ...}``), milliseconds a query;
- ``map``: ``releases.reduce.map_release`` of the published release (fits and saves its map again).

The anchors are the same commands run at the commit before each change (docs/benchmarks.md,
section 18, names them): a path's code before and after cannot both run in one process.

    .venv/bin/python bench/scale_paths.py /tmp/scale1m/ws lacking filter map
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from embedlake import Workspace

from _common import write_result
from _common.children import child_result


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(ws_path: Path, part: str) -> dict[str, Any]:
    with Workspace.open(ws_path) as ws:
        release_id = ws.catalog.releases.alias(ws.settings.gate.alias)
        assert release_id is not None, "no published release: run bench/scale.py first"
        out: dict[str, Any] = {"part": part, "release": release_id}
        if part == "filter":
            out.update(_filter(ws, ws_path))
        base = _peak_mib()
        started = time.perf_counter()
        if part == "lacking":
            from embedlake.releases import coverage

            out["lacking"] = coverage.lacking(ws, release_id)
        elif part == "map":
            from embedlake.releases import reduce

            reduce.map_release(ws, release_id)
        out.setdefault("seconds", round(time.perf_counter() - started, 2))
        out.setdefault("peak_over_base_mib", round(_peak_mib() - base))
        return out


def _filter(ws: Workspace, ws_path: Path) -> dict[str, Any]:
    from embedlake.search.searcher import Searcher

    searcher = Searcher(ws)
    lines = (ws_path / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    encoded = searcher.encoder.encode([json.loads(line)["text"] for line in lines])
    source = next(iter(ws.catalog.documents.iter_fields(batch=1)))[1]
    for q in encoded:  # warm the pages the searches touch
        searcher.search_encoded(q[None, :], 10)
    out: dict[str, Any] = {}
    for name, where in (("unfiltered", None), ("every_document", {"source": source})):
        base = _peak_mib()
        started = time.perf_counter()
        hits = [searcher.search_encoded(q[None, :], 10, where)[0] for q in encoded]
        out[name] = {
            "ms_per_query": round((time.perf_counter() - started) / len(encoded) * 1000, 1),
            "hits": sum(len(h) for h in hits),
            "peak_over_base_mib": round(_peak_mib() - base),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ws", type=Path)
    parser.add_argument("parts", nargs="+", choices=["lacking", "filter", "map"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.ws, args.parts[0])))
        return
    results = []
    for part in args.parts:
        results.append(child_result(__file__, str(args.ws), part, "--child"))
        print(json.dumps(results[-1]), flush=True)
    write_result("scale_paths", {"ws": str(args.ws), "results": results})


if __name__ == "__main__":
    main()
