"""OpenVINO as a runtime for the ONNX forms, against onnxruntime and sentence-transformers fp32.

Decision 0019 records a run. Needs `pip install openvino` (not a dependency of embedlake). Each
OpenVINO side reuses `OnnxEncoder`'s tokenisation, length-sorted batching and pooling with its
session swapped for an OpenVINO compiled model, so only the runtime differs. Anchor:
sentence-transformers fp32 (batch 32, max length 256) in the same run, rounds interleaved.

    .venv/bin/python bench/inference_openvino.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from sentence_transformers import SentenceTransformer

from embedlake.encoders import forms
from embedlake.encoders.forms.onnx import export
from embedlake.encoders.onnx import OnnxEncoder
from embedlake.encoders.sentence_transformers import builtin_path

from _common import DATA, table, write_result
from _common.timing import median, paired, rotated

ANCHOR = "sentence-transformers"


class Compiled:
    """An OpenVINO compiled model behind onnxruntime's ``run`` signature."""

    def __init__(self, core: ov.Core, path: Path, precision: str) -> None:
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        self.model = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.model.create_infer_request()

    def run(self, outputs: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.request.infer(feed)[self.model.output(0)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    queries = [
        json.loads(line)["text"]
        for c in ("cranfield", "med", "cisi")
        for line in (DATA / c / "queries.jsonl").open(encoding="utf-8")
    ][:300]
    docs = [json.loads(line) for line in (DATA / "med" / "corpus.jsonl").open(encoding="utf-8")]
    calibration = [f"{d['title']} {d['text']}" for d in random.Random(0).sample(docs, 32)]
    source, core = builtin_path(), ov.Core()
    anchor = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    anchor.max_seq_length = 256
    sides: dict[str, Any] = {
        ANCHOR: lambda t: anchor.encode(t, batch_size=32, normalize_embeddings=True)
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("onnx-fp32", "onnx-int8"):
            forms.make(
                name, source, folder / name, calibration=calibration, export_cache=folder / "x"
            )
            sides[f"onnxruntime {name}"] = OnnxEncoder(folder / name).encode
        export(source, folder / "raw.onnx")  # unfused: OpenVINO fuses by itself
        for label, path, precision in (
            ("openvino fp32", folder / "raw.onnx", "f32"),
            ("openvino bf16", folder / "raw.onnx", "bf16"),
            ("openvino onnx-int8 (QDQ)", folder / "onnx-int8" / "model.onnx", "f32"),
        ):
            encoder = OnnxEncoder(folder / "onnx-fp32")
            encoder.session = Compiled(core, path, precision)  # type: ignore[assignment]
            sides[label] = encoder.encode
        reference = np.asarray(sides[ANCHOR](queries))
        texts = [*queries[:20], " ".join(["a long passage about swept wings"] * 60)]
        facts: dict[str, dict[str, float]] = {}
        for name, encode in sides.items():
            cosine = np.sum(np.asarray(encode(queries)) * reference, axis=1)
            alone = np.vstack([np.asarray(encode([t])) for t in texts[:20]])
            mixed = np.asarray(encode(texts))[:20]
            facts[name] = {
                "cosine_mean": float(cosine.mean()),
                "cosine_min": float(cosine.min()),
                "alone_vs_batch_min": float(np.sum(alone * mixed, axis=1).min()),
            }
        seconds: dict[str, list[float]] = {n: [] for n in sides}
        for r in range(args.rounds):
            for name in rotated(list(sides), r):
                started = time.perf_counter()
                sides[name](queries)
                seconds[name].append(time.perf_counter() - started)
    rows = []
    for name in sides:
        ratios = paired([1 / s for s in seconds[name]], [1 / s for s in seconds[ANCHOR]])
        facts[name]["ratio"] = median(ratios)
        facts[name]["ratio_low"], facts[name]["ratio_high"] = min(ratios), max(ratios)
        f = facts[name]
        rows.append(
            [
                name,
                f"{f['cosine_mean']:.5f} / {f['cosine_min']:.5f}",
                f"{f['alone_vs_batch_min']:.6f}",
                f"{f['ratio']:.2f} ({f['ratio_low']:.2f}–{f['ratio_high']:.2f})",
            ]
        )
    print(table(["side", "cosine mean / min", "alone vs batch min", "× anchor (range)"], rows))
    print(f"load average {os.getloadavg()}; openvino {ov.__version__}")
    write_result("inference-openvino", {"sides": facts, "load_average": os.getloadavg()})


if __name__ == "__main__":
    main()
