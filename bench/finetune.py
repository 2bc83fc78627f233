"""Fine-tuning that wins, and a gate that can tell: per judged collection, the base MiniLM release,
the fine-tuned release, BM25+stem and hybrid search, each with its paired 95% interval against the
base on the same test queries.

    .venv/bin/python bench/finetune.py [--collections med,lisa,cranfield,npl,cisi,cacm] [--epochs 1]
        [--learning-rate 5e-5] [--name finetune]

None of the shared collections ships a training split, so each is copied with a seeded 40% of its
judged queries moved to ``train.tsv`` and 10% to ``dev.tsv`` (``split_copy``); the test half is what
the gate and every number here use. Fine-tuning is ``embedlake train`` with the ``[training]``
defaults (hard negatives from BM25 and the live release, MNRL, the best epoch on the dev queries);
the gate's policy is ``certified_gain``, so "gate" says whether it would have published. Hybrid is
each release's own fitted fusion (on the dev and train queries its model did not train on) over
dense and BM25+stem passages. Anchor, same run: the base release.
Targets: the fine-tuned model's lower bound above zero on at least three of cranfield, cisi, npl,
lisa and med; the fine-tuned release's hybrid ≥ 1 point above the better of its dense mode and
BM25+stem on at least four of the six.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from embedlake import Workspace
from embedlake.evaluate import metrics
from embedlake.evaluate.bench import bench_bm25
from embedlake.evaluate.paired import paired
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import Dataset, load_registered, split_copy
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.releases import gate
from embedlake.releases.build import build
from embedlake.search.searcher import Searcher
from embedlake.training.train import train

from _common import DATA, table, write_result

ENV = {
    "EMBEDLAKE_SERVING__FORMS": "[]",  # quality is the claim here; the forms have their bench
    "EMBEDLAKE_GATE__POLICY": "certified_gain",
}
TARGETED = ("cranfield", "cisi", "npl", "lisa", "med")


def hybrid(ws: Workspace, release: str, dataset: Dataset) -> dict[str, float]:
    """Per-query nDCG@10 of the release's hybrid search on the dataset's queries."""
    searcher = Searcher(ws, release=release)
    run = {
        q: {h.id: h.score for h in searcher.hybrid(text, 100)}
        for q, text in dataset.queries.items()
    }
    return metrics.per_query(run, dataset.qrels)["ndcg@10"]


def points(change: Any) -> dict[str, float]:
    return {
        "delta": 100 * change.delta,
        "low": 100 * change.low,
        "high": 100 * change.high,
        "p_value": change.p_value,
    }


def run(root: Path, name: str, epochs: int) -> dict[str, Any]:
    folder = root / "split" / name
    splits = split_copy(DATA / name, folder, train=0.4, dev=0.1, seed=0)
    with Workspace.init(root / name, environ=ENV) as ws:
        ingest_path(ws, folder)
        base = resolve_model(ws, "minilm")
        started = time.perf_counter()
        base_release = build(direct_context(ws, "bench", uuid4().hex), ws, base.ref, reason="base")
        base_seconds = time.perf_counter() - started
        started = time.perf_counter()
        prefix, manifest = train(ws, name=f"{name}-ft", pairs=f"qrels:{folder}", epochs=epochs)
        train_seconds = time.perf_counter() - started
        record, _ = artifacts.register_from_lake(ws, prefix)
        ft_release = build(
            direct_context(ws, "bench", uuid4().hex), ws, record.ref, reason="fine-tuned"
        )
        test = load_registered(ws, name)
        releases = ws.catalog.releases
        [base_result] = gate.benchmark(ws, releases.get(base_release), [test], modes=False)
        [ft_result] = gate.benchmark(ws, releases.get(ft_release), [test], modes=False)
        base_pq, ft_pq = base_result.per_query["ndcg@10"], ft_result.per_query["ndcg@10"]
        bm25 = bench_bm25(ws, test)
        bm25s = bench_bm25(ws, test, stem=True)
        hybrid_base = hybrid(ws, base_release, test)
        hybrid_ft = hybrid(ws, ft_release, test)
        status = releases.get(ft_release).status
        gated = releases.get(ft_release).report["gate"]
        fusions = {r: releases.get(r).report["hybrid"] for r in (base_release, ft_release)}
    mean = lambda pq: sum(pq.values()) / len(pq)  # noqa: E731
    return {
        "collection": name,
        "test_queries": len(splits["test"]),
        "train_queries": len(splits["train"]),
        "dev_queries": len(splits["dev"]),
        "train_pairs": manifest["training_data"]["n_pairs"],
        "hard_negatives": manifest["training_data"]["hard_negatives"],
        "dev": manifest["params"]["dev"],
        "bm25": bm25.metrics,
        "bm25+stem": bm25s.metrics,
        "base": base_result.metrics,
        "finetuned": ft_result.metrics,
        "hybrid_base_ndcg@10": mean(hybrid_base),
        "hybrid_finetuned_ndcg@10": mean(hybrid_ft),
        "fusion_base": fusions[base_release],
        "fusion_finetuned": fusions[ft_release],
        # every change in nDCG@10 points against the base release, paired on the test queries
        "vs_base": {
            "finetuned": points(paired(base_pq, ft_pq)),
            "bm25+stem": points(paired(base_pq, bm25s.per_query["ndcg@10"])),
            "hybrid_base": points(paired(base_pq, hybrid_base)),
            "hybrid_finetuned": points(paired(base_pq, hybrid_ft)),
        },
        "gate": status,
        "gate_rules": gated["rules"],
        "train_seconds": train_seconds,
        "base_release_seconds": base_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="med,lisa,cranfield,npl,cisi,cacm")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, help="[training] learning_rate's default")
    parser.add_argument("--name", default="finetune", help="the result file's name")
    args = parser.parse_args()
    if args.learning_rate is not None:
        ENV["EMBEDLAKE_TRAINING__LEARNING_RATE"] = str(args.learning_rate)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.collections.split(","):
            rows.append(run(Path(tmp), name, args.epochs))
            r = rows[-1]["vs_base"]["finetuned"]
            print(
                f"{name}: fine-tuned {r['delta']:+.1f} points (95% CI {r['low']:+.1f} … "
                f"{r['high']:+.1f}, p {r['p_value']:.3g}), gate {rows[-1]['gate']}",
                flush=True,
            )
            # saved after each collection, so that a run stopped early keeps what it finished
            write_result(
                args.name, {"rows": rows, "epochs": args.epochs, "env": ENV, "complete": False}
            )

    def ci(r: dict[str, Any], key: str) -> str:
        c = r["vs_base"][key]
        return f"{c['delta']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"

    print(
        table(
            [
                "collection",
                "test q",
                "pairs",
                "MiniLM",
                "fine-tuned",
                "Δ ft [95% CI]",
                "BM25+stem",
                "Δ BM25+stem",
                "hybrid",
                "Δ hybrid ft",
                "gate",
                "train s",
            ],
            [
                (
                    r["collection"],
                    r["test_queries"],
                    r["train_pairs"],
                    r["base"]["ndcg@10"],
                    r["finetuned"]["ndcg@10"],
                    ci(r, "finetuned"),
                    r["bm25+stem"]["ndcg@10"],
                    ci(r, "bm25+stem"),
                    r["hybrid_finetuned_ndcg@10"],
                    ci(r, "hybrid_finetuned"),
                    r["gate"],
                    r["train_seconds"],
                )
                for r in rows
            ],
        )
    )
    certified = [
        r["collection"]
        for r in rows
        if r["collection"] in TARGETED and r["vs_base"]["finetuned"]["low"] > 0
    ]
    print(
        f"\nfine-tuned gain certified (lower bound > 0) on {len(certified)} of "
        f"{sum(r['collection'] in TARGETED for r in rows)} targeted collections "
        f"({', '.join(certified) or 'none'}); target ≥ 3: "
        f"{'met' if len(certified) >= 3 else 'MISSED'}"
    )
    # each release's tuned hybrid against the better of its own dense mode and BM25+stem, in points
    margins, base_margins = {}, {}
    for r in rows:
        bm25s = r["bm25+stem"]["ndcg@10"]
        margins[r["collection"]] = 100 * (
            r["hybrid_finetuned_ndcg@10"] - max(r["finetuned"]["ndcg@10"], bm25s)
        )
        base_margins[r["collection"]] = 100 * (
            r["hybrid_base_ndcg@10"] - max(r["base"]["ndcg@10"], bm25s)
        )
    for label, found in (("fine-tuned", margins), ("base", base_margins)):
        ahead = [name for name, m in found.items() if m >= 1]
        print(
            f"hybrid ({label}) minus the better of its dense and BM25+stem, points: "
            + ", ".join(f"{n} {m:+.1f}" for n, m in found.items())
            + f"; ≥ +1 on {len(ahead)} of {len(rows)} (target ≥ 4): "
            + ("met" if len(ahead) >= 4 else "MISSED")
        )
    write_result(
        args.name,
        {
            "rows": rows,
            "epochs": args.epochs,
            "env": ENV,
            "complete": True,
            "certified": certified,
            "hybrid_margin_points": margins,
            "hybrid_base_margin_points": base_margins,
        },
    )


if __name__ == "__main__":
    main()
