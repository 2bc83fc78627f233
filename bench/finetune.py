"""Fine-tuning gain on held-out queries: the fine-tuned MiniLM vs its base vs BM25, per collection.

    .venv/bin/python bench/finetune.py [--collections cisi,cranfield,med] [--epochs 1]

For each collection: a workspace with a published all-MiniLM-L6-v2 release; `train` on half of the
judged queries (seeded split, recorded in the manifest); the release chain benchmarks the fine-tuned
model against the base on the other half. BM25 (plain and stemmed) runs on the same held-out queries.
Anchor, same run: the base model's release on the same queries. Target: ≥ +3 nDCG@10 points on at
least one collection (reported with a bootstrap 95% confidence interval, honestly where it is not).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from embedlake import Workspace
from embedlake.evaluate.bench import bench_bm25
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import Dataset, load_registered
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.releases.build import build
from embedlake.releases.compare import compare
from embedlake.training.train import train

from _common import DATA, table, write_result


def run(root: Path, name: str, epochs: int) -> dict[str, object]:
    with Workspace.init(root / name, environ={}) as ws:
        ingest_path(ws, DATA / name)
        base = resolve_model(ws, "minilm")
        started = time.perf_counter()
        base_release = build(direct_context(ws, "bench", uuid4().hex), ws, base.ref, reason="base")
        base_seconds = time.perf_counter() - started
        started = time.perf_counter()
        prefix, manifest = train(ws, name=f"{name}-ft", pairs=f"qrels:{DATA / name}", epochs=epochs)
        train_seconds = time.perf_counter() - started
        record, _ = artifacts.register_from_lake(ws, prefix)
        ft_release = build(
            direct_context(ws, "bench", uuid4().hex), ws, record.ref, reason="fine-tuned"
        )
        held = set(manifest["training_data"]["heldout_queries"])
        full = load_registered(ws, name)
        heldout = Dataset(
            name,
            {q: t for q, t in full.queries.items() if q in held},
            {q: full.qrels[q] for q in full.queries if q in held},
        )
        bm25 = bench_bm25(ws, heldout)
        bm25s = bench_bm25(ws, heldout, stem=True)
        [row] = compare(ws, base_release, ft_release)
        status = ws.catalog.releases.get(ft_release).status
    return {
        "collection": name,
        "heldout_queries": len(heldout.queries),
        "train_pairs": manifest["training_data"]["n_pairs"],
        "bm25": bm25.metrics,
        "bm25+stem": bm25s.metrics,
        "base": row[base_release],
        "finetuned": row[ft_release],
        "ndcg_gain_points": 100 * row["ndcg@10_diff"],
        "ndcg_gain_ci95_points": [100 * v for v in row["ndcg@10_diff_ci95"]],
        "wins": row["wins"],
        "losses": row["losses"],
        "gate": status,
        "train_seconds": train_seconds,
        "base_release_seconds": base_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--collections", default="cisi,cranfield,med")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.collections.split(","):
            rows.append(run(Path(tmp), name, args.epochs))
            r = rows[-1]
            print(
                f"{name}: done: base {100 * r['base']['ndcg@10']:.1f}, fine-tuned "
                f"{100 * r['finetuned']['ndcg@10']:.1f}, gain {r['ndcg_gain_points']:+.1f} "
                f"(95% CI {r['ndcg_gain_ci95_points'][0]:+.1f} … "
                f"{r['ndcg_gain_ci95_points'][1]:+.1f})",
                flush=True,
            )
            # saved after each collection, so that a run stopped early keeps what it finished
            write_result("finetune", {"rows": rows, "epochs": args.epochs, "complete": False})
    print(
        table(
            [
                "collection",
                "held-out q",
                "pairs",
                "BM25",
                "BM25+stem",
                "MiniLM",
                "fine-tuned",
                "gain (pts)",
                "95% CI",
                "R@100 base",
                "R@100 ft",
                "gate",
                "train s",
            ],
            [
                (
                    r["collection"],
                    r["heldout_queries"],
                    r["train_pairs"],
                    r["bm25"]["ndcg@10"],
                    r["bm25+stem"]["ndcg@10"],
                    r["base"]["ndcg@10"],
                    r["finetuned"]["ndcg@10"],
                    r["ndcg_gain_points"],
                    f"{r['ndcg_gain_ci95_points'][0]:+.1f} … {r['ndcg_gain_ci95_points'][1]:+.1f}",
                    r["base"]["recall@100"],
                    r["finetuned"]["recall@100"],
                    r["gate"],
                    r["train_seconds"],
                )
                for r in rows
            ],
        )
    )
    best = max(r["ndcg_gain_points"] for r in rows)
    print(
        f"\nbest gain: {best:+.1f} nDCG@10 points (target ≥ +3 on one collection): "
        f"{'met' if best >= 3 else 'MISSED'}"
    )
    write_result("finetune", {"rows": rows, "epochs": args.epochs, "complete": True})


if __name__ == "__main__":
    main()
