"""Serving forms of MiniLM: documents/second, vectors and retrieval quality against the reference.

Every form this machine offers (`embedlake.encoders.forms.available()`) is made from the built-in
all-MiniLM-L6-v2 in a temporary folder and loaded through `load_folder`, as a release would. Anchor:
sentence-transformers' own `SentenceTransformer.encode` (fp32, batch 32, max_seq_length 256) on the
same texts in the same run. Speed on two text sets, each pass of each side alternating order:

- short: the queries of all six judged collections of at most 64 word pieces (median ~20: what the
  API embeds per request);
- long: passages of at least 256 word pieces from the benchmarked corpora (truncated at 256: what
  batch embedding of long documents costs).

Quality: cosine of each form's vectors to the anchor's (mean/min), and nDCG@10 and top-10 overlap
with the reference of exact cosine search over each collection, queries and corpus embedded by the
form. Selection rule: the fastest form on short texts whose nDCG@10 is within 0.5% (relative) of
torch-fp32 on every collection. Targets: that form ≥ 2.3× the anchor on short texts.

    .venv/bin/python bench/inference.py [--collections med,cisi,cranfield] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from embedlake.encoders import Encoder, forms, hardware, load_folder
from embedlake.encoders.sentence_transformers import builtin_path
from embedlake.evaluate import metrics
from embedlake.ingest import datasets

from _common import DATA, median, table, write_result

TARGET_SPEEDUP = 2.3
MAX_NDCG_LOSS = 0.005  # relative
BATCH = 32
MAX_LEN = 256
ANCHOR = "sentence-transformers"
SHORT_FROM = ("cranfield", "cisi", "cacm", "med", "npl", "lisa")
SHORT_MAX = 64


def corpus(collection: str) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with (DATA / collection / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            ids.append(str(doc["_id"]))
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
    return ids, texts


def long_passages(collections: Sequence[str], n: int, tokenizer: Tokenizer) -> list[str]:
    """The first ``n`` documents (round robin over the collections) of ≥ MAX_LEN word pieces."""
    pools = []
    for c in collections:
        texts = corpus(c)[1]
        lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
        pools.append([t for t, k in zip(texts, lengths, strict=True) if k >= MAX_LEN])
    out: list[str] = []
    for row in zip(*pools, strict=False):
        out.extend(row)
    return out[:n]


def rate(encode: Callable[[list[str]], Any], texts: list[str]) -> float:
    started = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - started)


def speed(
    sides: dict[str, Callable[[list[str]], Any]], texts: list[str], rounds: int
) -> dict[str, list[float]]:
    """docs/s of each side per round; the order rotates every round so no side always goes first."""
    names = list(sides)
    for name in names:  # warm-up: first calls allocate, JIT-select kernels, fill caches
        sides[name](texts[: 2 * BATCH])
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(rate(sides[name], texts))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {out[n][-1]:.0f}" for n in names), flush=True)
    return out


def retrieval(
    encoder: Encoder | SentenceTransformer, collection: str
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """nDCG@10 of exact cosine search, and each query's top-10 ids."""
    dataset = datasets.load_folder(DATA / collection)
    ids, texts = corpus(collection)
    qids = list(dataset.queries)
    docs = encode_with(encoder, texts)
    queries = encode_with(encoder, [dataset.queries[q] for q in qids])
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    return metrics.mean(run, dataset.qrels), {
        q: [ids[j] for j in top[i, :10]] for i, q in enumerate(qids)
    }


def encode_with(encoder: Encoder | SentenceTransformer, texts: list[str]) -> np.ndarray:
    if isinstance(encoder, SentenceTransformer):
        return np.asarray(
            encoder.encode(texts, batch_size=BATCH, normalize_embeddings=True), dtype=np.float32
        )
    return encoder.encode(texts, batch_size=BATCH)


def overlap(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    return float(np.mean([len(set(a[q]) & set(b[q])) / 10 for q in a]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="med,cisi,cranfield")
    parser.add_argument("--forms", default=",".join(forms.available()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=256, help="passages of ≥ 256 word pieces")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    collections = args.collections.split(",")
    names = args.forms.split(",")
    load_before = os.getloadavg()  # the machines are shared: say how busy this one was
    source = builtin_path()
    anchor = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    anchor.max_seq_length = MAX_LEN
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads and truncates to 128 by itself
    tokenizer.no_truncation()
    queries = [t for c in SHORT_FROM for t in datasets.load_folder(DATA / c).queries.values()]
    short = [
        t
        for t, e in zip(queries, tokenizer.encode_batch(queries), strict=True)
        if len(e.ids) <= SHORT_MAX
    ]
    long = long_passages(collections, args.long, tokenizer)
    print(
        f"{len(short)} queries (median {median([len(tokenizer.encode(t).ids) for t in short]):.0f}"
        f" word pieces), {len(long)} passages of ≥ {MAX_LEN}; torch threads "
        f"{torch.get_num_threads()}, cores {hardware.cores()}, native bf16 "
        f"{hardware.native_bf16()}, VNNI {hardware.vnni()}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="embedlake-forms-") as tmp:
        encoders: dict[str, Encoder] = {}
        built: dict[str, dict[str, Any]] = {}
        for name in names:
            started = time.perf_counter()
            fields = forms.make(name, source, Path(tmp) / name, max_seq_length=MAX_LEN)
            built[name] = {**fields, "build_seconds": round(time.perf_counter() - started, 1)}
            encoders[name] = load_folder(Path(tmp) / name, fields, device="cpu")
            print(f"made {name} in {built[name]['build_seconds']} s", flush=True)

        def anchor_encode(texts: list[str]) -> Any:
            return anchor.encode(texts, batch_size=BATCH, normalize_embeddings=True)

        sides: dict[str, Callable[[list[str]], Any]] = {ANCHOR: anchor_encode}
        sides.update(
            {n: (lambda t, e=e: e.encode(t, batch_size=BATCH)) for n, e in encoders.items()}
        )
        rates: dict[str, dict[str, list[float]]] = {}
        for label, texts in (("short", short), ("long", long)):
            print(f"speed, {label} texts:", flush=True)
            rates[label] = speed(sides, texts, args.rounds)

        cosine: dict[str, dict[str, dict[str, float]]] = {}
        for label, texts in (("short", short), ("long", long)):
            reference = np.asarray(anchor_encode(texts), dtype=np.float32)
            for name, enc in encoders.items():
                if enc.dim != reference.shape[1]:
                    continue  # the static form is another vector space
                cos = np.sum(enc.encode(texts) * reference, axis=1)
                cosine.setdefault(name, {})[label] = {
                    "mean": float(cos.mean()),
                    "min": float(cos.min()),
                }

        quality: dict[str, dict[str, dict[str, float]]] = {}
        tops: dict[str, dict[str, dict[str, list[str]]]] = {}
        for c in collections:
            print(f"retrieval on {c}", flush=True)
            for name, enc in encoders.items():
                means, tops.setdefault(name, {})[c] = retrieval(enc, c)
                quality.setdefault(name, {})[c] = {"ndcg@10": means["ndcg@10"]}
    reference_form = forms.REFERENCE if forms.REFERENCE in encoders else names[0]
    for name in names:
        for c in collections:
            quality[name][c]["top10_overlap"] = overlap(tops[name][c], tops[reference_form][c])

    def ratio(name: str, label: str) -> float:
        per_round = [f / a for f, a in zip(rates[label][name], rates[label][ANCHOR], strict=True)]
        return median(per_round)

    def loss(name: str, c: str) -> float:
        ref = quality[reference_form][c]["ndcg@10"]
        return (ref - quality[name][c]["ndcg@10"]) / ref if ref else 0.0

    eligible = [n for n in names if all(loss(n, c) <= MAX_NDCG_LOSS for c in collections)]
    selected = max(eligible, key=lambda n: ratio(n, "short")) if eligible else None

    rows = [
        [ANCHOR, median(rates["short"][ANCHOR]), 1.0, median(rates["long"][ANCHOR]), 1.0]
        + [""] * 2
        + [""] * len(collections)
    ]
    for name in names:
        cos = cosine.get(name, {})
        rows.append(
            [
                name,
                median(rates["short"][name]),
                ratio(name, "short"),
                median(rates["long"][name]),
                ratio(name, "long"),
                f"{cos['short']['mean']:.4f} / {cos['short']['min']:.4f}" if cos else "–",
                f"{cos['long']['mean']:.4f} / {cos['long']['min']:.4f}" if cos else "–",
            ]
            + [
                f"{100 * quality[name][c]['ndcg@10']:.2f} ({-100 * loss(name, c):+.2f}%, "
                f"{quality[name][c]['top10_overlap']:.2f})"
                for c in collections
            ]
        )
    headers = [
        "form",
        "short docs/s",
        "× anchor",
        "long docs/s",
        "× anchor",
        "cosine short mean/min",
        "cosine long mean/min",
    ] + [f"{c} nDCG@10 (Δ rel, top-10 overlap)" for c in collections]
    print()
    print(table(headers, rows))
    met = selected is not None and ratio(selected, "short") >= TARGET_SPEEDUP
    load_after = os.getloadavg()
    print(f"\nload average (1/5/15 min) at start {load_before}, at end {load_after}")
    if selected is None:
        print("\nno form keeps nDCG@10 within 0.5% of the reference on every collection")
    else:
        print(
            f"\nselected: {selected}, {ratio(selected, 'short'):.2f}× the anchor on short texts, "
            f"{ratio(selected, 'long'):.2f}× on long (target ≥ {TARGET_SPEEDUP}×: "
            f"{'met' if met else 'MISSED'})"
        )
    write_result(
        "inference",
        {
            "collections": collections,
            "short_texts": len(short),
            "long_texts": len(long),
            "batch_size": BATCH,
            "max_seq_length": MAX_LEN,
            "torch_threads": torch.get_num_threads(),
            "load_average": {"start": load_before, "end": load_after},
            "forms": built,
            "docs_per_s": rates,
            "ratio_short": {n: ratio(n, "short") for n in names},
            "ratio_long": {n: ratio(n, "long") for n in names},
            "cosine": cosine,
            "quality": quality,
            "rule": f"fastest form (short texts) with nDCG@10 loss ≤ {MAX_NDCG_LOSS:.1%} relative "
            f"to {reference_form} on every collection",
            "selected": selected,
            "target": TARGET_SPEEDUP,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
