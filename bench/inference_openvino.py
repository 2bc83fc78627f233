"""The OpenVINO forms against onnxruntime and sentence-transformers fp32, at 1 and 2 threads.

The forms are made and loaded as a release would (`forms.make`, `load_folder(threads=N)`); each
side encodes the same short queries (Cranfield, MED, CISI; batch 32) in interleaved rounds, the
order rotating. Anchor: sentence-transformers fp32 (batch 32, max length 256) at the same thread
count (`torch.set_num_threads`), in the same round. Both the process's CPU seconds and the wall
seconds of each call are recorded: on a shared machine the wall time swings with the other jobs
while the CPU time holds (docs/decisions/0019), and a thread that waits for a descheduled peer
shows in wall time only. bench/inference.py is the full comparison of every form (quality too).

    .venv/bin/python bench/inference_openvino.py [--rounds 3] [--threads 1,2] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from embedlake.encoders import forms, load_folder
from embedlake.encoders.sentence_transformers import builtin_path

from _common import DATA, table, write_result
from _common.timing import median, paired, rotated

ANCHOR = "sentence-transformers"
FORMS = ("onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")


def timed(encode: Callable[[list[str]], Any], texts: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    encode(texts)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    queries = [
        json.loads(line)["text"]
        for c in ("cranfield", "med", "cisi")
        for line in (DATA / c / "queries.jsonl").open(encoding="utf-8")
    ][: args.queries]
    docs = [json.loads(line) for line in (DATA / "med" / "corpus.jsonl").open(encoding="utf-8")]
    calibration = [f"{d['title']} {d['text']}" for d in random.Random(0).sample(docs, 32)]
    names = [n for n in FORMS if forms.unavailable_reason(n) is None]
    load_before, results = os.getloadavg(), {}
    with tempfile.TemporaryDirectory() as tmp:
        made = {
            n: forms.make(
                n, builtin_path(), Path(tmp) / n, calibration=calibration, export_cache=Path(tmp)
            )
            for n in names
        }
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            anchor = SentenceTransformer(str(builtin_path()), device="cpu", local_files_only=True)
            anchor.max_seq_length = 256
            sides: dict[str, Callable[[list[str]], Any]] = {
                ANCHOR: lambda t, a=anchor: a.encode(t, batch_size=32, normalize_embeddings=True)
            }
            for n in names:
                encoder = load_folder(Path(tmp) / n, made[n], threads=threads)
                sides[n] = lambda t, e=encoder: e.encode(t, batch_size=32)
            reference = np.asarray(sides[ANCHOR](queries))
            cosine = {n: float(np.sum(sides[n](queries) * reference, axis=1).mean()) for n in names}
            seconds: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "wall": []} for n in sides}
            for r in range(args.rounds):
                for n in rotated(list(sides), r):
                    cpu, wall = timed(sides[n], queries)
                    seconds[n]["cpu"].append(cpu)
                    seconds[n]["wall"].append(wall)
            results[threads] = {"seconds": seconds, "cosine": cosine}
    rows = []
    for threads, result in results.items():
        seconds = result["seconds"]
        for n in seconds:
            row = [f"{n}, {threads} thread{'s' if threads > 1 else ''}"]
            for basis in ("cpu", "wall"):
                ratios = paired(
                    [1 / s for s in seconds[n][basis]], [1 / s for s in seconds[ANCHOR][basis]]
                )
                rate = len(queries) / median(seconds[n][basis])
                row.append(
                    f"{rate:.0f}/s, {median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
                )
            row.append(f"{result['cosine'][n]:.5f}" if n in result["cosine"] else "")
            rows.append(row)
    headers = ["side", "by CPU s: queries/s, × anchor (range)", "by wall s: the same", "cosine"]
    print(table(headers, rows))
    load_after = os.getloadavg()
    print(f"load average {load_before} → {load_after}; {len(queries)} queries, batch 32")
    write_result(
        "inference-openvino",
        {
            "queries": len(queries),
            "rounds": args.rounds,
            "threads": {str(t): r for t, r in results.items()},
            "load_average": {"start": load_before, "end": load_after},
        },
    )


if __name__ == "__main__":
    main()
