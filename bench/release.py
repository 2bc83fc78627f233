"""Time of each stage of a release build (embed, index, reducer, benchmark) for a 10k-document
corpus, with the direct batch-embedding call on the same corpus as the anchor for the embed stage.

Besides wall time, the anchor and the whole build record the process's CPU time and the load
average, because the two sides run one after the other (direct first) on a machine that may be
shared: a wall-time ratio moved by other processes shows as a CPU-time ratio that did not move.

    .venv/bin/python bench/release.py [--collection npl] [--model minilm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from embedlake import Workspace
from embedlake.embeddings.batch import embed
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.releases.build import build

from _common import DATA, table, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collection", default="npl")
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with Workspace.init(Path(tmp) / "direct", environ={}) as ws:
            ingest_path(ws, DATA / args.collection)
            model = resolve_model(ws, args.model)
            encoder = artifacts.load_encoder(ws, model)
            load_before = os.getloadavg()[0]
            started, cpu = time.perf_counter(), time.process_time()
            embed(ws, model, encoder)
            direct = time.perf_counter() - started
            direct_cpu = time.process_time() - cpu
            direct_load = (load_before, os.getloadavg()[0])
        with Workspace.init(Path(tmp) / "release", environ={}) as ws:
            ingest_path(ws, DATA / args.collection)
            documents = ws.catalog.documents.count()
            model = resolve_model(ws, args.model)
            load_before = os.getloadavg()[0]
            started, cpu = time.perf_counter(), time.process_time()
            release_id = build(
                direct_context(ws, "bench", uuid4().hex), ws, model.ref, reason="bench"
            )
            total = time.perf_counter() - started
            total_cpu = time.process_time() - cpu
            build_load = (load_before, os.getloadavg()[0])
            report = ws.catalog.releases.get(release_id).report
    stages = report["stages"]
    print(
        table(
            ["stage", "seconds"],
            [*stages.items(), ("total", total), ("direct embed (anchor)", direct)],
        )
    )
    print(f"\n{documents:,} documents; embed stage / direct embed = {stages['embed'] / direct:.3f}")
    print(
        f"CPU seconds: direct embed {direct_cpu:.1f}, whole build {total_cpu:.1f}; load average "
        f"direct {direct_load[0]:.1f} → {direct_load[1]:.1f}, build {build_load[0]:.1f} → "
        f"{build_load[1]:.1f}"
    )
    write_result(
        "release",
        {
            "collection": args.collection,
            "model": args.model,
            "documents": documents,
            "stages": stages,
            "total_s": total,
            "direct_embed_s": direct,
            "direct_embed_cpu_s": direct_cpu,
            "total_cpu_s": total_cpu,
            "load_average": {"direct": direct_load, "build": build_load},
            "reducer": report.get("reducer"),
            "gate": report.get("gate"),
        },
    )


if __name__ == "__main__":
    main()
