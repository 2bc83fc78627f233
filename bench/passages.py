"""Passages on and off, same model, same run: what splitting long documents gains and costs.

1. The six judged collections: nDCG@10 and recall@100 with passages off (each document one text,
   cut at the window) and on (split by the encoder's tokenizer, the release's default chunking),
   ranked by MaxP and by the sum of the best 2 or 3 passages; exact search, so only the
   representation differs.
2. A known-item test on long documents built from reuters21578 and 20newsgroups: for each document
   over 600 words (a seeded sample), one sentence from its second half and one from its first 150
   words are removed from it and become two queries; among the long documents and as many short
   ones as distractors, MRR@10 of the document for each kind of query, passages on and off.
   Targets (issue 16): late-sentence MRR on ≥ 3× off, and ≥ 0.9× the early-sentence MRR on.
3. The cost: encode time, and HNSW build time and index size, passages on against off.

The encoder is all-MiniLM-L6-v2 at its window of 256 word pieces, in bfloat16 where the CPU has
native bf16 (the same encoder for both sides: only the passages differ).

    .venv/bin/python bench/passages.py [--collections med,cisi] [--known 300] [--distractors 1000]
    .venv/bin/python bench/passages.py --size 128 --name passages-128   # smaller passages
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.config import PassagesSettings
from embedlake.embeddings.passages import Chunking, Splitter
from embedlake.encoders import hardware, token_window
from embedlake.encoders.sentence_transformers import SentenceTransformerEncoder, builtin_path
from embedlake.evaluate import metrics
from embedlake.index.exact import ExactIndex
from embedlake.index.hnsw import HnswIndex
from embedlake.ingest.datasets import load_folder
from embedlake.search.passages import collapse

from _common import DATA, table, write_result

JUDGED = ["cranfield", "cisi", "cacm", "med", "npl", "lisa"]
KNOWN = ["reuters21578", "20newsgroups"]
AGGREGATES = {"max": ("max", 1), "sum2": ("sum", 2), "sum3": ("sum", 3)}
DEPTH = 100
LONG_WORDS = 600
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def corpus(name: str) -> list[dict[str, Any]]:
    with (DATA / name / "corpus.jsonl").open() as f:
        return [json.loads(line) for line in f]


class Side:
    """One way of turning documents into vectors: passages off or on."""

    def __init__(self, encoder: SentenceTransformerEncoder, chunking: Chunking) -> None:
        self.encoder, self.chunking = encoder, chunking
        self.splitter = Splitter(chunking, token_window(encoder))

    def embed(self, docs: list[dict[str, Any]]) -> dict[str, Any]:
        started = time.perf_counter()
        splits = self.splitter.split_many([(d["_id"], d.get("title", ""), d["text"]) for d in docs])
        split_seconds = time.perf_counter() - started
        passages = [p for s in splits for p in s.passages]
        vectors = self.encoder.encode([p.text for p in passages], batch_size=32)
        return {
            "keys": [p.key for p in passages],
            "vectors": vectors,
            "split_seconds": split_seconds,
            "encode_seconds": time.perf_counter() - started - split_seconds,
            "passages": len(passages),
            "cut_documents": sum(1 for s in splits if s.cut),
        }


def rankings(
    embedded: dict[str, Any], queries: np.ndarray, depth: int
) -> dict[str, list[list[str]]]:
    """Each aggregation's ranking of documents per query, over exact search of the passages."""
    index = ExactIndex(queries.shape[1])
    index.add(embedded["keys"], embedded["vectors"])
    docs = len({k.split("\x1f", 1)[0] for k in embedded["keys"]})
    fetch = min(len(embedded["keys"]), depth * max(1, -(-len(embedded["keys"]) // docs)) * 3)
    rows = index.search(queries, fetch)
    return {
        name: [[d for d, _, _ in collapse(row, depth, how, top)] for row in rows]
        for name, (how, top) in AGGREGATES.items()
    }


def index_cost(embedded: dict[str, Any]) -> dict[str, float]:
    started = time.perf_counter()
    index = HnswIndex(embedded["vectors"].shape[1])
    index.add(embedded["keys"], embedded["vectors"])
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return {"hnsw_build_seconds": seconds, "index_bytes": size}


def judged(name: str, sides: dict[str, Side]) -> dict[str, Any]:
    docs = corpus(name)
    dataset = load_folder(DATA / name)
    qids = list(dataset.queries)
    encoder = next(iter(sides.values())).encoder
    queries = encoder.encode([dataset.queries[q] for q in qids], batch_size=32)
    out: dict[str, Any] = {"documents": len(docs), "queries": len(qids)}
    for side_name, side in sides.items():
        embedded = side.embed(docs)
        ranked = rankings(embedded, queries, DEPTH)
        scores = {}
        for agg, rows in ranked.items():
            run = {
                q: {d: float(DEPTH - i) for i, d in enumerate(row)}
                for q, row in zip(qids, rows, strict=True)
            }
            scores[agg] = metrics.mean(run, dataset.qrels)
            if side_name == "off":
                break  # one passage per document: every aggregation is the same
        out[side_name] = {
            "metrics": scores,
            **{k: v for k, v in embedded.items() if k not in ("keys", "vectors")},
            **index_cost(embedded),
        }
        print(
            f"  {name:<10} {side_name:<3} nDCG@10 "
            + " ".join(f"{a} {100 * m['ndcg@10']:.1f}" for a, m in scores.items())
            + f"  passages {embedded['passages']:,}  cut {embedded['cut_documents']:,}",
            flush=True,
        )
    return out


def known_item(name: str, sides: dict[str, Side], n: int, distractors: int) -> dict[str, Any]:
    rng = random.Random(0)
    docs = [d for d in corpus(name) if d["text"].strip()]
    long = [d for d in docs if len(d["text"].split()) > LONG_WORDS]
    rng.shuffle(long)
    items, queries = [], {"late": [], "early": []}
    for d in long:
        sentences = SENTENCE.split(d["text"])
        lengths = np.cumsum([len(s.split()) for s in sentences])
        total = lengths[-1]

        def fit(s: str) -> bool:
            return 8 <= len(s.split()) <= 40

        early = [i for i, s in enumerate(sentences) if lengths[i] <= 150 and fit(s)]
        late = [
            i
            for i, s in enumerate(sentences)
            if lengths[i] - len(sentences[i].split()) >= total / 2 and fit(s)
        ]
        if not early or not late:
            continue
        e, l_ = rng.choice(early), rng.choice(late)
        queries["early"].append(sentences[e])
        queries["late"].append(sentences[l_])
        kept = " ".join(s for i, s in enumerate(sentences) if i not in (e, l_))
        items.append({**d, "text": kept})
        if len(items) == n:
            break
    ids = {d["_id"] for d in items}
    others = [d for d in docs if d["_id"] not in ids and len(d["text"].split()) <= LONG_WORDS]
    corpus_ = items + rng.sample(others, min(distractors, len(others)))
    encoder = next(iter(sides.values())).encoder
    encoded = {k: encoder.encode(v, batch_size=32) for k, v in queries.items()}
    out: dict[str, Any] = {"long_documents": len(items), "documents": len(corpus_)}
    for side_name, side in sides.items():
        embedded = side.embed(corpus_)
        result: dict[str, Any] = {k: v for k, v in embedded.items() if k not in ("keys", "vectors")}
        for kind, vectors in encoded.items():
            ranked = rankings(embedded, vectors, 10)
            for agg, rows in ranked.items():
                rr = [
                    1.0 / (row.index(d["_id"]) + 1) if d["_id"] in row else 0.0
                    for d, row in zip(items, rows, strict=True)
                ]
                result[f"mrr@10 {kind} {agg}"] = float(np.mean(rr))
        out[side_name] = result
        print(
            f"  {name:<12} {side_name:<3} MRR@10 late {result['mrr@10 late max']:.3f} "
            f"early {result['mrr@10 early max']:.3f}  passages {embedded['passages']:,}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default=",".join(JUDGED))
    parser.add_argument("--known-collections", default=",".join(KNOWN))
    parser.add_argument("--known", type=int, default=300, help="long documents per collection")
    parser.add_argument("--distractors", type=int, default=1000)
    parser.add_argument("--size", type=int, default=0, help="passages.size (0: the window)")
    parser.add_argument("--name", default="passages", help="the result file's name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    precision = "bf16" if hardware.native_bf16() else "fp32"
    encoder = SentenceTransformerEncoder(
        builtin_path(), device="cpu", max_seq_length=256, precision=precision
    )
    window = token_window(encoder)
    assert window is not None
    on = Chunking.resolve(PassagesSettings(size=args.size), window.tokens)
    sides = {"off": Side(encoder, Chunking()), "on": Side(encoder, on)}
    print(f"MiniLM {precision}, window {window.tokens}, passages {on.key}", flush=True)
    results: dict[str, Any] = {"precision": precision, "chunking": on.describe()}
    for name in [c for c in args.collections.split(",") if c]:
        results.setdefault("judged", {})[name] = judged(name, sides)
        write_result(args.name, {**results, "complete": False})
    for name in [c for c in args.known_collections.split(",") if c]:
        results.setdefault("known_item", {})[name] = known_item(
            name, sides, args.known, args.distractors
        )
        write_result(args.name, {**results, "complete": False})
    write_result(args.name, {**results, "complete": True})

    rows = []
    for name, r in results.get("judged", {}).items():
        off, on_ = r["off"]["metrics"]["max"], r["on"]["metrics"]
        rows.append(
            [name, 100 * off["ndcg@10"]]
            + [100 * on_[a]["ndcg@10"] for a in AGGREGATES]
            + [100 * off["recall@100"], 100 * on_["max"]["recall@100"]]
            + [r["off"]["cut_documents"], r["on"]["passages"] / r["documents"]]
        )
    print()
    print(
        table(
            [
                "collection",
                "nDCG off",
                "on max",
                "on sum2",
                "on sum3",
                "R@100 off",
                "R@100 on",
                "cut off",
                "passages/doc",
            ],
            rows,
        )
    )
    rows = []
    for name, r in results.get("known_item", {}).items():
        off, on_ = r["off"], r["on"]
        rows.append(
            [
                name,
                r["long_documents"],
                off["mrr@10 late max"],
                on_["mrr@10 late max"],
                on_["mrr@10 late max"] / max(off["mrr@10 late max"], 1e-9),
                on_["mrr@10 early max"],
                on_["mrr@10 late max"] / max(on_["mrr@10 early max"], 1e-9),
                on_["mrr@10 late sum2"],
            ]
        )
    print()
    print(
        table(
            [
                "collection",
                "long docs",
                "late off",
                "late on",
                "on/off (≥3)",
                "early on",
                "late/early on (≥0.9)",
                "late on sum2",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
