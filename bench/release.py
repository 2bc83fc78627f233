"""Time of each stage of a release build (embed, index, reducer, benchmark) for a 10k-document
corpus, with the direct batch-embedding call on the same corpus as the anchor for the embed stage.

    .venv/bin/python bench/release.py [--collection npl] [--model minilm]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from embedlake import Workspace
from embedlake.batch import embed
from embedlake.encoders import artifacts
from embedlake.encoders.resolve import encoder_options, resolve_model
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
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
            encoder = artifacts.load(ws, model, **encoder_options(ws, model))
            started = time.perf_counter()
            embed(ws, model, encoder)
            direct = time.perf_counter() - started
        with Workspace.init(Path(tmp) / "release", environ={}) as ws:
            ingest_path(ws, DATA / args.collection)
            documents = ws.catalog.documents.count()
            model = resolve_model(ws, args.model)
            started = time.perf_counter()
            release_id = build(
                direct_context(ws, "bench", uuid4().hex), ws, model.ref, reason="bench"
            )
            total = time.perf_counter() - started
            report = ws.catalog.releases.get(release_id).report
    stages = report["stages"]
    print(
        table(
            ["stage", "seconds"],
            [*stages.items(), ("total", total), ("direct embed (anchor)", direct)],
        )
    )
    print(f"\n{documents:,} documents; embed stage / direct embed = {stages['embed'] / direct:.3f}")
    write_result(
        "release",
        {
            "collection": args.collection,
            "model": args.model,
            "documents": documents,
            "stages": stages,
            "total_s": total,
            "direct_embed_s": direct,
            "reducer": report.get("reducer"),
            "gate": report.get("gate"),
        },
    )


if __name__ == "__main__":
    main()
