"""Batch embedding throughput: the embedlake pipeline vs a bare SentenceTransformer.encode loop.

Pipeline = `embedlake.batch.embed` over an ingested corpus: plan, read documents from the catalog,
encode shard by shard, write Parquet shards to the lake, record coverage. Each pipeline round uses a
fresh workspace (the ingest is not timed). Bare = `model.encode` of the same MiniLM object over the
same texts (title + " " + text), batch size 32, max_seq_length 256, normalize_embeddings=True.
Rounds alternate the order of the two sides; the claim is pipeline ≥ 0.9× bare (median docs/s).
``--form NAME`` measures a serving form of MiniLM instead (made once, registered in each workspace
as a release build registers it): the pipeline with that form against the form's own bare
``encode`` over the same texts.

    .venv/bin/python bench/embed.py [--collection lisa] [--limit 3000] [--rounds 2] [--form onnx-int8]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlake import Workspace
from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.batch import embed
from embedlake.encoders import forms
from embedlake.encoders.sentence_transformers import builtin_path
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model

from _common import DATA, median, table, write_result

TARGET = 0.9
FORM: tuple[str, Path, dict[str, Any]] | None = None  # (name, folder, manifest fields) with --form


def serving_model(ws: Workspace) -> ModelRecord:
    """MiniLM, or the form of it being measured, registered in ``ws``."""
    if FORM is None:
        return resolve_model(ws, "minilm")
    name, folder, fields = FORM
    return artifacts.publish_folder(
        ws, folder, name=f"minilm.{name}", kind=fields["kind"], version="bench", extra=fields
    )


class NullEncoder:
    """Same shape of output as the model, no model: what is left of `embed` is pipeline overhead."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.kind = "null"

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def overhead_round(corpus: Path, folder: Path) -> float:
    """Seconds of one `embed` with a NullEncoder: planning, catalog reads, Parquet, coverage."""
    with Workspace.init(folder) as ws:
        ingest_path(ws, corpus)
        record = serving_model(ws)
        started = time.perf_counter()
        embed(ws, record, NullEncoder(record.dim))  # type: ignore[arg-type]
        return time.perf_counter() - started


def write_slice(collection: str, limit: int, folder: Path) -> Path:
    """The first ``limit`` documents of a collection's corpus, as a .jsonl file."""
    path = folder / f"{collection}-{limit}.jsonl"
    with (DATA / collection / "corpus.jsonl").open(encoding="utf-8") as src, path.open("w") as dst:
        for n, line in enumerate(src):
            if n >= limit:
                break
            dst.write(line)
    return path


def pipeline_round(corpus: Path, folder: Path) -> tuple[float, int, list[str]]:
    """Seconds and documents of one `embed` over a freshly ingested workspace, plus its texts."""
    with Workspace.init(folder) as ws:
        ingest_path(ws, corpus)
        record = serving_model(ws)
        encoder = artifacts.load_encoder(ws, record)  # cached per process
        texts = [d.full_text for d in ws.catalog.documents.iter_live()]
        started = time.perf_counter()
        report = embed(ws, record, encoder)
        seconds = time.perf_counter() - started
        return seconds, report.embedded, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection", default="lisa")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (≥ 2)")
    parser.add_argument("--form", default="", help="a serving form of MiniLM (see forms.FORMS)")
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="only the pipeline with a null encoder (bench/results/embed-overhead.json)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    global FORM
    forms_tmp = tempfile.TemporaryDirectory(prefix="embedlake-form-")
    if args.form:
        folder = Path(forms_tmp.name) / args.form
        FORM = (args.form, folder, forms.make(args.form, builtin_path(), folder))

    pipeline_s: list[float] = []
    bare_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="embedlake-embed-") as tmp:
        root = Path(tmp)
        corpus = write_slice(args.collection, args.limit, root)
        overhead_s = [overhead_round(corpus, root / f"null{n}") for n in range(3)]
        print(
            f"pipeline overhead (null encoder): {median(overhead_s):.2f} s for {args.limit} docs "
            f"({1e3 * median(overhead_s) / args.limit:.2f} ms/doc; runs "
            f"{', '.join(f'{x:.2f}' for x in overhead_s)})",
            flush=True,
        )
        if args.overhead_only:
            write_result(
                "embed-overhead",
                {"collection": args.collection, "documents": args.limit, "seconds": overhead_s},
            )
            return
        # Warm-up: loads the model (cached by content hash for every later workspace) and gets
        # the texts in the pipeline's own order (document id order).
        with Workspace.init(root / "warmup") as ws:
            ingest_path(ws, corpus)
            record = serving_model(ws)
            encoder = artifacts.load_encoder(ws, record)
            settings = ws.settings.embed
            texts = [d.full_text for d in ws.catalog.documents.iter_live()]
        batch = settings.batch_size
        max_length = settings.max_seq_length
        print(
            f"{len(texts)} docs of {args.collection}, {record.ref}, batch {batch}, shard "
            f"{settings.shard_size}, max_seq_length {max_length}, torch threads "
            f"{torch.get_num_threads()}",
            flush=True,
        )
        encoder.encode(texts[:256], batch_size=batch)

        def bare() -> None:
            started = time.perf_counter()
            if FORM is None:  # the reference: sentence-transformers' own encode()
                encoder.model.encode(  # type: ignore[attr-defined]
                    texts,
                    batch_size=batch,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            else:
                encoder.encode(texts, batch_size=batch)
            bare_s.append(time.perf_counter() - started)
            print(f"  bare      {len(texts) / bare_s[-1]:7.1f} docs/s", flush=True)

        def pipe(n: int) -> None:
            seconds, count, seen = pipeline_round(corpus, root / f"ws{n}")
            if count != len(texts) or seen != texts:
                raise SystemExit("the pipeline embedded other texts than the bare loop")
            pipeline_s.append(seconds)
            print(f"  pipeline  {count / seconds:7.1f} docs/s", flush=True)

        for n in range(args.rounds):
            if n % 2 == 0:
                pipe(n)
                bare()
            else:
                bare()
                pipe(n)

    n_docs = len(texts)
    pipe_rate = n_docs / median(pipeline_s)
    bare_rate = n_docs / median(bare_s)
    ratio = pipe_rate / bare_rate
    print()
    print(
        table(
            ["side", "runs (s)", "median docs/s"],
            [
                ["pipeline (embed)", ", ".join(f"{s:.1f}" for s in pipeline_s), f"{pipe_rate:.1f}"],
                ["bare encode", ", ".join(f"{s:.1f}" for s in bare_s), f"{bare_rate:.1f}"],
            ],
        )
    )
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"\npipeline / bare = {ratio:.3f} (target ≥ {TARGET}: {verdict})")
    # Noise-free estimate: the bare time plus the pipeline's own overhead (null encoder).
    implied = median(bare_s) / (median(bare_s) + median(overhead_s))
    print(f"bare / (bare + null-encoder overhead) = {implied:.3f}")
    payload: dict[str, Any] = {
        "collection": args.collection,
        "documents": n_docs,
        "batch_size": batch,
        "shard_size": settings.shard_size,
        "model": record.ref,
        "form": args.form or None,
        "max_seq_length": max_length,
        "torch_threads": torch.get_num_threads(),
        "pipeline_seconds": pipeline_s,
        "bare_seconds": bare_s,
        "pipeline_docs_per_s": pipe_rate,
        "bare_docs_per_s": bare_rate,
        "ratio": ratio,
        "overhead_seconds": overhead_s,
        "implied_ratio": implied,
        "target": TARGET,
        "met": ratio >= TARGET,
    }
    write_result(f"embed-{args.form}" if args.form else "embed", payload)
    forms_tmp.cleanup()


if __name__ == "__main__":
    main()
