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
from _common.timing import paired, rotated

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
        for name in rotated(names, r):
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


def minilm_tokenizer(source: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads and truncates to 128 by itself
    tokenizer.no_truncation()
    return tokenizer


def text_sets(tokenizer: Tokenizer, collections: list[str], n_long: int) -> dict[str, list[str]]:
    """Short: the judged queries of ≤ SHORT_MAX word pieces; long: passages of ≥ MAX_LEN."""
    queries = [t for c in SHORT_FROM for t in datasets.load_folder(DATA / c).queries.values()]
    short = [
        t
        for t, e in zip(queries, tokenizer.encode_batch(queries), strict=True)
        if len(e.ids) <= SHORT_MAX
    ]
    long = long_passages(collections, n_long, tokenizer)
    print(
        f"{len(short)} queries (median {median([len(tokenizer.encode(t).ids) for t in short]):.0f}"
        f" word pieces), {len(long)} passages of ≥ {MAX_LEN}; torch threads "
        f"{torch.get_num_threads()}, cores {hardware.cores()}, native bf16 "
        f"{hardware.native_bf16()}, VNNI {hardware.vnni()}",
        flush=True,
    )
    return {"short": short, "long": long}


def make_forms(
    names: list[str], source: Path, tmp: Path
) -> tuple[dict[str, Encoder], dict[str, dict[str, Any]]]:
    """Each form made from MiniLM in ``tmp`` and loaded as a release would: encoders, manifests."""
    encoders: dict[str, Encoder] = {}
    built: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.perf_counter()
        fields = forms.make(name, source, tmp / name, max_seq_length=MAX_LEN)
        built[name] = {**fields, "build_seconds": round(time.perf_counter() - started, 1)}
        encoders[name] = load_folder(tmp / name, fields, device="cpu")
        print(f"made {name} in {built[name]['build_seconds']} s", flush=True)
    return encoders, built


def cosines(
    anchor_encode: Callable[[list[str]], Any], encoders: dict[str, Encoder], sets: dict
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and min cosine of each form's vectors to the anchor's, on each text set."""
    cosine: dict[str, dict[str, dict[str, float]]] = {}
    for label, texts in sets.items():
        reference = np.asarray(anchor_encode(texts), dtype=np.float32)
        for name, enc in encoders.items():
            if enc.dim != reference.shape[1]:
                continue  # the static form is another vector space
            cos = np.sum(enc.encode(texts) * reference, axis=1)
            cosine.setdefault(name, {})[label] = {
                "mean": float(cos.mean()),
                "min": float(cos.min()),
            }
    return cosine


def qualities(
    encoders: dict[str, Encoder], collections: list[str], reference_form: str
) -> dict[str, dict[str, dict[str, float]]]:
    """nDCG@10 of each form on each collection, and its top-10 overlap with the reference form."""
    quality: dict[str, dict[str, dict[str, float]]] = {}
    tops: dict[str, dict[str, dict[str, list[str]]]] = {}
    for c in collections:
        print(f"retrieval on {c}", flush=True)
        for name, enc in encoders.items():
            means, tops.setdefault(name, {})[c] = retrieval(enc, c)
            quality.setdefault(name, {})[c] = {"ndcg@10": means["ndcg@10"]}
    for name in encoders:
        for c in collections:
            quality[name][c]["top10_overlap"] = overlap(tops[name][c], tops[reference_form][c])
    return quality


class Outcome:
    """Speed ratios to the anchor, nDCG@10 losses to the reference form, the selected form."""

    def __init__(self, rates: dict, quality: dict, reference_form: str, collections: list[str]):
        self.rates, self.quality = rates, quality
        self.reference_form, self.collections = reference_form, collections

    def ratio(self, name: str, label: str) -> float:
        return median(paired(self.rates[label][name], self.rates[label][ANCHOR]))

    def loss(self, name: str, c: str) -> float:
        ref = self.quality[self.reference_form][c]["ndcg@10"]
        return (ref - self.quality[name][c]["ndcg@10"]) / ref if ref else 0.0

    def selected(self) -> str | None:
        """The fastest form on short texts within MAX_NDCG_LOSS on every collection."""
        eligible = [
            n
            for n in self.quality
            if all(self.loss(n, c) <= MAX_NDCG_LOSS for c in self.collections)
        ]
        return max(eligible, key=lambda n: self.ratio(n, "short")) if eligible else None

    def row(self, name: str, cosine: dict[str, Any]) -> list[Any]:
        cos = cosine.get(name, {})
        return [
            name,
            median(self.rates["short"][name]),
            self.ratio(name, "short"),
            median(self.rates["long"][name]),
            self.ratio(name, "long"),
            f"{cos['short']['mean']:.4f} / {cos['short']['min']:.4f}" if cos else "–",
            f"{cos['long']['mean']:.4f} / {cos['long']['min']:.4f}" if cos else "–",
        ] + [
            f"{100 * self.quality[name][c]['ndcg@10']:.2f} ({-100 * self.loss(name, c):+.2f}%, "
            f"{self.quality[name][c]['top10_overlap']:.2f})"
            for c in self.collections
        ]

    def print_table(self, names: list[str], cosine: dict[str, Any]) -> None:
        rates, collections = self.rates, self.collections
        anchor = [ANCHOR, median(rates["short"][ANCHOR]), 1.0, median(rates["long"][ANCHOR]), 1.0]
        rows = [anchor + [""] * 2 + [""] * len(collections)]
        rows += [self.row(name, cosine) for name in names]
        headers = ["form", "short docs/s", "× anchor", "long docs/s", "× anchor"]
        headers += ["cosine short mean/min", "cosine long mean/min"]
        headers += [f"{c} nDCG@10 (Δ rel, top-10 overlap)" for c in collections]
        print()
        print(table(headers, rows))


def print_verdict(out: Outcome, selected: str | None, met: bool) -> None:
    if selected is None:
        print("\nno form keeps nDCG@10 within 0.5% of the reference on every collection")
        return
    print(
        f"\nselected: {selected}, {out.ratio(selected, 'short'):.2f}× the anchor on short texts, "
        f"{out.ratio(selected, 'long'):.2f}× on long (target ≥ {TARGET_SPEEDUP}×: "
        f"{'met' if met else 'MISSED'})"
    )


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], Outcome, dict, list[str]]:
    """Make the forms, time them against the anchor, compare their vectors and quality."""
    collections, names = args.collections.split(","), args.forms.split(",")
    source = builtin_path()
    anchor = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    anchor.max_seq_length = MAX_LEN
    sets = text_sets(minilm_tokenizer(source), collections, args.long)
    with tempfile.TemporaryDirectory(prefix="embedlake-forms-") as tmp:
        encoders, built = make_forms(names, source, Path(tmp))

        def anchor_encode(texts: list[str]) -> Any:
            return anchor.encode(texts, batch_size=BATCH, normalize_embeddings=True)

        sides: dict[str, Callable[[list[str]], Any]] = {ANCHOR: anchor_encode}
        sides.update(
            {n: (lambda t, e=e: e.encode(t, batch_size=BATCH)) for n, e in encoders.items()}
        )
        rates: dict[str, dict[str, list[float]]] = {}
        for label, texts in sets.items():
            print(f"speed, {label} texts:", flush=True)
            rates[label] = speed(sides, texts, args.rounds)
        cosine = cosines(anchor_encode, encoders, sets)
        reference_form = forms.REFERENCE if forms.REFERENCE in encoders else names[0]
        quality = qualities(encoders, collections, reference_form)
    out = Outcome(rates, quality, reference_form, collections)
    facts = {"short_texts": len(sets["short"]), "long_texts": len(sets["long"]), "forms": built}
    return facts, out, cosine, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="med,cisi,cranfield")
    parser.add_argument("--forms", default=",".join(forms.available()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=256, help="passages of ≥ 256 word pieces")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()  # the machines are shared: say how busy this one was
    facts, out, cosine, names = measure(args)
    out.print_table(names, cosine)
    selected = out.selected()
    met = selected is not None and out.ratio(selected, "short") >= TARGET_SPEEDUP
    load_after = os.getloadavg()
    print(f"\nload average (1/5/15 min) at start {load_before}, at end {load_after}")
    print_verdict(out, selected, met)
    write_result(
        "inference",
        {
            "collections": out.collections,
            "short_texts": facts["short_texts"],
            "long_texts": facts["long_texts"],
            "batch_size": BATCH,
            "max_seq_length": MAX_LEN,
            "torch_threads": torch.get_num_threads(),
            "load_average": {"start": load_before, "end": load_after},
            "forms": facts["forms"],
            "docs_per_s": out.rates,
            "ratio_short": {n: out.ratio(n, "short") for n in names},
            "ratio_long": {n: out.ratio(n, "long") for n in names},
            "cosine": cosine,
            "quality": out.quality,
            "rule": f"fastest form (short texts) with nDCG@10 loss ≤ {MAX_NDCG_LOSS:.1%} relative "
            f"to {out.reference_form} on every collection",
            "selected": selected,
            "target": TARGET_SPEEDUP,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
