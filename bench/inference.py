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
form. Batch independence: each of 40 texts (short and long) alone against the same text in a batch
of mixed lengths, the least cosine. Selection rule (the release's, `releases/form_rule.py`): the
fastest form on short texts faster than the anchor in every round, not significantly worse than
torch-fp32 per query (one-sided Wilcoxon on per-query nDCG@10, p ≥ 0.05) and losing at most 2%
(relative) on every collection. Target: that form ≥ 2.5× the anchor on short texts, every form's
vectors independent of their batch (cosine ≥ 0.9999). The int8 form is calibrated on 32 documents
of the benchmarked corpora (the collection's own texts, as a release does).

The OpenVINO forms (openvino-fp32, -bf16 where the CPU has native bf16, -int8 over onnx-int8's
graph; the `openvino` extra) are among the forms offered and so measured by default. `--threads N`
runs every side on N threads (torch's, onnxruntime's intra-op and OpenVINO's inference threads; by
default every core this process may use), for the 1-vs-2-thread comparison of a small server.

`--selection`: the release's own selection (`form_choice.choose`, default settings) on a workspace
of med (1,033 documents, 30 judged queries), timed: the wall and CPU seconds of the whole stage.

    .venv/bin/python bench/inference.py [--collections med,cisi,cranfield] [--rounds 3] [--threads N]
    .venv/bin/python bench/inference.py --selection
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer

from embedlake import machine
from embedlake.encoders import Encoder, forms, hardware, load_folder
from embedlake.encoders.sentence_transformers import builtin_path
from embedlake.evaluate import metrics
from embedlake.ingest import datasets
from embedlake.releases.form_rule import paired as paired_test

from _common import DATA, median, table, write_result
from _common.timing import paired, rotated

TARGET_SPEEDUP = 2.5
MAX_NDCG_LOSS = 0.02  # relative: the policy (serving.max_ndcg_loss)
ALPHA = 0.05  # significance of the paired test (serving.significance)
BATCH_INDEPENDENT = 0.9999
BATCH_INDEPENDENT_HALF = 0.9998  # torch-bf16, cuda-fp16: bf16 roundings follow the batch's shape
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
    """nDCG@10 of exact cosine search per query, and each query's top-10 ids."""
    dataset = datasets.load_folder(DATA / collection)
    ids, texts = corpus(collection)
    qids = list(dataset.queries)
    docs = encode_with(encoder, texts)
    queries = encode_with(encoder, [dataset.queries[q] for q in qids])
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    return metrics.per_query(run, dataset.qrels)["ndcg@10"], {
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
        f"{torch.get_num_threads()}, cores {machine.cores()}, native bf16 "
        f"{hardware.native_bf16()}, VNNI {hardware.vnni()}",
        flush=True,
    )
    return {"short": short, "long": long}


def make_forms(
    names: list[str], source: Path, tmp: Path, calibration: list[str], threads: int | None = None
) -> tuple[dict[str, Encoder], dict[str, dict[str, Any]]]:
    """Each form made from MiniLM in ``tmp`` and loaded as a release would: encoders, manifests."""
    encoders: dict[str, Encoder] = {}
    built: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.perf_counter()
        fields = forms.make(
            name,
            source,
            tmp / name,
            max_seq_length=MAX_LEN,
            calibration=calibration,
            export_cache=tmp / "export",
        )
        built[name] = {**fields, "build_seconds": round(time.perf_counter() - started, 1)}
        options: dict[str, Any] = {"device": "cpu"}
        if threads and fields["kind"] in ("onnx", "openvino"):
            options["threads"] = threads  # torch's sides follow torch.set_num_threads
        encoders[name] = load_folder(tmp / name, fields, **options)
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


def batch_independence(encoders: dict[str, Encoder], sets: dict) -> dict[str, float]:
    """The least cosine between a text alone and the same text in a batch of mixed lengths."""
    texts = sets["short"][:20] + sets["long"][:20]
    random.Random(0).shuffle(texts)
    out = {}
    for name, enc in encoders.items():
        alone = np.vstack([enc.encode([t], batch_size=1) for t in texts])
        mixed = enc.encode(texts, batch_size=BATCH)
        out[name] = float(np.sum(alone * mixed, axis=1).min())
    return out


def qualities(
    encoders: dict[str, Encoder], collections: list[str], reference_form: str
) -> dict[str, dict[str, dict[str, float]]]:
    """nDCG@10 of each form on each collection, its paired test against the reference form (p of
    being worse), and its top-10 overlap with the reference form."""
    quality: dict[str, dict[str, dict[str, float]]] = {}
    tops: dict[str, dict[str, dict[str, list[str]]]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for c in collections:
        print(f"retrieval on {c}", flush=True)
        for name, enc in encoders.items():
            per_query.setdefault(name, {})[c], tops.setdefault(name, {})[c] = retrieval(enc, c)
            values = list(per_query[name][c].values())
            quality.setdefault(name, {})[c] = {"ndcg@10": float(np.mean(values))}
    for name in encoders:
        for c in collections:
            quality[name][c]["top10_overlap"] = overlap(tops[name][c], tops[reference_form][c])
            ref = per_query[reference_form][c]
            test = paired_test([ref[q] for q in ref], [per_query[name][c][q] for q in ref])
            quality[name][c]["p_worse"] = test.p_value
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

    def passed(self, name: str) -> bool:
        """Not significantly worse than the reference form, and within the loss policy."""
        return all(
            self.loss(name, c) <= MAX_NDCG_LOSS and self.quality[name][c]["p_worse"] >= ALPHA
            for c in self.collections
        )

    def faster(self, name: str) -> bool:
        """Faster than the anchor in every round on short texts (beyond the spread)."""
        return min(paired(self.rates["short"][name], self.rates["short"][ANCHOR])) > 1.0

    def selected(self) -> str | None:
        """The fastest form on short texts that passed and is faster than the anchor."""
        eligible = [n for n in self.quality if self.passed(n) and self.faster(n)]
        return max(eligible, key=lambda n: self.ratio(n, "short")) if eligible else None

    def spread(self, name: str, label: str) -> str:
        ratios = paired(self.rates[label][name], self.rates[label][ANCHOR])
        return f"{min(ratios):.2f}–{max(ratios):.2f}"

    def row(self, name: str, cosine: dict[str, Any], alone: dict[str, float]) -> list[Any]:
        cos = cosine.get(name, {})
        return [
            name,
            median(self.rates["short"][name]),
            f"{self.ratio(name, 'short'):.2f} ({self.spread(name, 'short')})",
            median(self.rates["long"][name]),
            f"{self.ratio(name, 'long'):.2f} ({self.spread(name, 'long')})",
            f"{cos['short']['mean']:.4f} / {cos['short']['min']:.4f}" if cos else "–",
            f"{cos['long']['mean']:.4f} / {cos['long']['min']:.4f}" if cos else "–",
            f"{alone[name]:.6f}",
        ] + [
            f"{100 * self.quality[name][c]['ndcg@10']:.2f} ({-100 * self.loss(name, c):+.2f}%, "
            f"p {self.quality[name][c]['p_worse']:.2f}, {self.quality[name][c]['top10_overlap']:.2f})"
            for c in self.collections
        ]

    def print_table(
        self, names: list[str], cosine: dict[str, Any], alone: dict[str, float]
    ) -> None:
        rates, collections = self.rates, self.collections
        anchor = [ANCHOR, median(rates["short"][ANCHOR]), 1.0, median(rates["long"][ANCHOR]), 1.0]
        rows = [anchor + [""] * 3 + [""] * len(collections)]
        rows += [self.row(name, cosine, alone) for name in names]
        headers = ["form", "short docs/s", "× anchor (range)", "long docs/s", "× anchor (range)"]
        headers += ["cosine short mean/min", "cosine long mean/min", "alone vs batch min"]
        headers += [f"{c} nDCG@10 (Δ rel, p worse, top-10 overlap)" for c in collections]
        print()
        print(table(headers, rows))


def print_verdict(out: Outcome, selected: str | None, met: bool) -> None:
    if selected is None:
        print("\nno form passed the quality rule and was faster than the anchor in every round")
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
    if args.threads:
        torch.set_num_threads(args.threads)
    anchor = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    anchor.max_seq_length = MAX_LEN
    sets = text_sets(minilm_tokenizer(source), collections, args.long)
    pool = [t for c in collections for t in corpus(c)[1]]
    calibration = random.Random(0).sample(pool, 32)  # the collections' own texts
    with tempfile.TemporaryDirectory(prefix="embedlake-forms-") as tmp:
        encoders, built = make_forms(names, source, Path(tmp), calibration, args.threads)

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
        alone = batch_independence(encoders, sets)
        reference_form = forms.REFERENCE if forms.REFERENCE in encoders else names[0]
        quality = qualities(encoders, collections, reference_form)
    out = Outcome(rates, quality, reference_form, collections)
    facts = {
        "short_texts": len(sets["short"]),
        "long_texts": len(sets["long"]),
        "forms": built,
        "alone_vs_batch": alone,
    }
    return facts, out, cosine, names


def selection() -> None:
    """The release's selection stage on med with default settings, timed (wall and CPU)."""
    from embedlake.ingest import ingest_path
    from embedlake.models.resolve import resolve_model
    from embedlake.releases.form_choice import choose
    from embedlake.workspace import Workspace

    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="embedlake-selection-") as tmp,
        Workspace.init(Path(tmp) / "ws") as ws,
    ):
        ingest_path(ws, DATA / "med")
        model = resolve_model(ws, "minilm").ref
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        report = choose(ws, model, {})["report"]
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    load_after = os.getloadavg()
    rows = [
        [
            name,
            row["docs_per_s"],
            f"{row.get('speedup', 1.0):.2f} ({row.get('speedup_low', 1):.2f}–"
            f"{row.get('speedup_high', 1):.2f})",
            json.dumps(row.get("quality", row.get("ndcg@10"))),
            row.get("passed", row.get("not_judged", "")),
        ]
        for name, row in report["forms"].items()
    ]
    print(table(["form", "docs/s", "× model (range)", "quality", "passed"], rows))
    print(f"\nchosen: {report['form']}; stage seconds {report['seconds']}; wall {wall:.1f} s, CPU")
    print(f"{cpu_s:.1f} s; load average at start {load_before}, at end {load_after}")
    print(f"evaluation: {report['evaluation']}; skipped: {report['skipped']}")
    write_result(
        "inference-selection",
        {
            "collection": "med",
            "wall_s": wall,
            "cpu_s": cpu_s,
            "target_s": 60,
            "met": wall <= 60,
            "load_average": {"start": load_before, "end": load_after},
            "report": report,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collections", default="med,cisi,cranfield")
    parser.add_argument("--forms", default=",".join(forms.available()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=256, help="passages of ≥ 256 word pieces")
    parser.add_argument("--threads", type=int, default=0, help="threads of every side (0: all)")
    parser.add_argument("--selection", action="store_true", help="time the release's selection")
    parser.add_argument("--name", default="inference", help="the result file's name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.selection:
        selection()
        return
    load_before = os.getloadavg()  # the machines are shared: say how busy this one was
    facts, out, cosine, names = measure(args)
    alone = facts["alone_vs_batch"]
    out.print_table(names, cosine, alone)
    selected = out.selected()
    independent = all(
        v >= (BATCH_INDEPENDENT_HALF if n in ("torch-bf16", "cuda-fp16") else BATCH_INDEPENDENT)
        for n, v in alone.items()
    )
    met = selected is not None and out.ratio(selected, "short") >= TARGET_SPEEDUP and independent
    print(f"every form's vectors independent of their batch (≥ {BATCH_INDEPENDENT}): {independent}")
    load_after = os.getloadavg()
    print(f"\nload average (1/5/15 min) at start {load_before}, at end {load_after}")
    print_verdict(out, selected, met)
    write_result(
        args.name,
        {
            "collections": out.collections,
            "short_texts": facts["short_texts"],
            "long_texts": facts["long_texts"],
            "batch_size": BATCH,
            "max_seq_length": MAX_LEN,
            "torch_threads": torch.get_num_threads(),
            "threads": args.threads or machine.cores(),
            "load_average": {"start": load_before, "end": load_after},
            "forms": facts["forms"],
            "docs_per_s": out.rates,
            "ratio_short": {n: out.ratio(n, "short") for n in names},
            "ratio_long": {n: out.ratio(n, "long") for n in names},
            "cosine": cosine,
            "quality": out.quality,
            "alone_vs_batch": alone,
            "rule": f"fastest form (short texts), faster than the anchor in every round, not "
            f"significantly worse per query than {out.reference_form} (one-sided Wilcoxon, "
            f"p >= {ALPHA}) and losing at most {MAX_NDCG_LOSS:.0%} relative on every collection",
            "selected": selected,
            "target": TARGET_SPEEDUP,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
