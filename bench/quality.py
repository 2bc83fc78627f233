"""Retrieval quality: BM25 (plain, +stem) vs LSA vs MiniLM on the judged test collections.

One fresh workspace per collection (in a temporary folder). Dense models are scored twice over the
same vectors: through an exact index (what the reference values in data/README.md measure) and
through the default HNSW index (what `embedlake search` serves), with ANN recall@10 against exact.

    .venv/bin/python bench/quality.py [--collections cranfield,cisi] [--models bm25,bm25+stem,lsa,minilm]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from embedlake import Workspace
from embedlake.embeddings.batch import embed
from embedlake.evaluate import bench
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import load_folder
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index

from _common import DATA, table, write_result

COLLECTIONS = ["cranfield", "cisi", "med", "cacm", "npl", "lisa"]
MODELS = ["bm25", "bm25+stem", "lsa", "minilm"]

# data/README.md, ×100: nDCG@10 per system, recall@100 per system (no stemmed recall given there).
REF_NDCG = {
    "cranfield": (35.2, 37.3, 39.0, 38.2),
    "cisi": (34.9, 38.6, 36.7, 41.9),
    "cacm": (42.5, 49.4, 23.2, 40.9),
    "med": (66.7, 69.6, 74.6, 78.7),
    "npl": (35.3, 42.8, 20.1, 43.4),
    "lisa": (43.3, 47.6, 27.0, 34.9),
}
REF_RECALL = {
    "cranfield": (70.9, None, 76.8, 77.2),
    "cisi": (41.7, None, 45.5, 47.2),
    "cacm": (60.1, None, 56.6, 71.6),
    "med": (77.7, None, 87.0, 95.8),
    "npl": (47.0, None, 38.7, 60.7),
    "lisa": (68.3, None, 66.1, 64.3),
}
AGREE = 0.5  # points (×100): within this of the reference counts as agreeing


def signed(x: float) -> str:
    return f"{round(x, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def run_dense(ws: Workspace, name: str, dataset: Any) -> dict[str, Any]:
    started = time.perf_counter()
    record = resolve_model(ws, name)  # minilm: registers the packaged model; lsa: fits on corpus
    encoder = artifacts.load_encoder(ws, record)
    report = embed(ws, record, encoder)
    build_index(ws, record, engine="exact")
    exact = bench.bench_model(ws, dataset, record.ref).metrics
    built = build_index(ws, record, engine="hnsw")
    hnsw = bench.bench_model(ws, dataset, record.ref).metrics
    return {
        "exact": exact,
        "hnsw": hnsw,
        "embed_seconds": report.seconds,
        "embed_rate": report.rate,
        "hnsw_build_seconds": built.seconds,
        "seconds": time.perf_counter() - started,
    }


def run_collection(name: str, models: list[str], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Workspace.init(root / name) as ws:
        started = time.perf_counter()
        ingest_path(ws, DATA / name)
        out["ingest_seconds"] = time.perf_counter() - started
        out["documents"] = ws.catalog.documents.count()
        dataset = load_folder(DATA / name)
        out["queries"] = len(dataset.queries)
        for model in models:
            started = time.perf_counter()
            if model.startswith("bm25"):
                res = bench.bench_bm25(ws, dataset, stem=model == "bm25+stem").metrics
                out[model] = {"exact": res, "seconds": time.perf_counter() - started}
            else:
                out[model] = run_dense(ws, model, dataset)
            m = out[model]
            print(
                f"  {name:<10} {model:<10} nDCG@10 {100 * m['exact']['ndcg@10']:5.1f}  "
                f"{m['seconds']:7.1f}s",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default=",".join(COLLECTIONS))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    collections = [c for c in args.collections.split(",") if c]
    models = [m for m in args.models.split(",") if m]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="embedlake-quality-") as tmp:
        for name in collections:
            results[name] = run_collection(name, models, Path(tmp))
            # saved after each collection, so that a crash late in a long run keeps the rest
            write_result("quality", {"collections": results, "complete": False})

    rows = []
    agree = total = 0
    for name, res in results.items():
        for model in models:
            i = MODELS.index(model)
            ex = res[model]["exact"]
            ndcg, rec = 100 * ex["ndcg@10"], 100 * ex["recall@100"]
            ref_n, ref_r = REF_NDCG[name][i], REF_RECALL[name][i]
            hn = res[model].get("hnsw")
            for got, ref in ((ndcg, ref_n), (rec, ref_r)):
                if ref is not None:
                    total += 1
                    agree += abs(got - ref) <= AGREE
            rows.append(
                [
                    name,
                    model,
                    f"{ndcg:.1f}",
                    ref_n,
                    signed(ndcg - ref_n),
                    f"{rec:.1f}",
                    ref_r,
                    None if ref_r is None else signed(rec - ref_r),
                    None if hn is None else f"{100 * hn['ndcg@10']:.1f}",
                    None if hn is None else f"{hn['ann_recall@10']:.3f}",
                    f"{res[model]['seconds']:.1f}",
                ]
            )
    print()
    print(
        table(
            [
                "collection",
                "system",
                "nDCG@10",
                "ref",
                "Δ",
                "R@100",
                "ref",
                "Δ",
                "nDCG@10 hnsw",
                "ann R@10",
                "seconds",
            ],
            rows,
        )
    )
    print(f"\n{agree}/{total} values within ±{AGREE} of data/README.md")
    write_result(
        "quality",
        {
            "collections": results,
            "complete": True,
            "agree_within": AGREE,
            "agree": agree,
            "compared": total,
            "table": rows,
        },
    )


if __name__ == "__main__":
    main()
