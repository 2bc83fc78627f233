"""The onnx-int8 form's quantisation: static (calibrated), so that a text's vector never depends on
the batch it is encoded in (build time).

Dynamic quantisation picks one activation scale per tensor per call, that is per batch: a text's
vector moved with its batch-mates (cosine 0.99 to itself alone). Static quantisation fixes every
activation scale at build time from calibration texts, the collection's own:
``onnxruntime.quantization.quantize_static``, QDQ, uint8 activations (one scale per tensor, MinMax
over the calibration texts) and per-channel int8 weights, MatMuls with constant weights only (the
attention products and the embedding lookup stay fp32).

The FFN output MatMuls stay fp32: their input (the GELU's output) has a few tokens and channels far
larger than the rest, and one scale per tensor crushes the others (mean cosine 0.93 to fp32 with
them quantised, 0.990 without; SmoothQuant's per-channel migration did not help, 0.929: see
docs/decisions/0019-forms-selection-and-static-int8.md).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from embedlake.encoders import hardware

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8
Feed = dict[str, npt.NDArray[np.int64]]


def feeds(
    texts: Sequence[str], tokenizer_file: Path, inputs: Sequence[str], max_seq_length: int
) -> list[Feed]:
    """The calibration texts as model inputs, batches of ``CALIBRATION_BATCH`` padded each to its
    own longest text (as serving pads them)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_seq_length)
    encodings = tokenizer.encode_batch(list(texts))
    out: list[Feed] = []
    for start in range(0, len(encodings), CALIBRATION_BATCH):
        batch = encodings[start : start + CALIBRATION_BATCH]
        width = max(len(e.ids) for e in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(batch):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        out.append({k: feed[k] for k in inputs})
    return out


def quantize(fp32: Path, out: Path, calibration: list[Feed]) -> dict[str, Any]:
    """``fp32`` smoothed and statically quantised into ``out``; how, for ``serving.json``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32))
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    weights = {i.name for i in model.graph.initializer}
    ffn_out = [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and n.input[1] in weights
        and producer.get(n.input[0]) in ("BiasGelu", "Gelu", "FastGelu")
    ]

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # untyped base
        def __init__(self) -> None:
            self.batches: Iterator[Feed] = iter(calibration)

        def get_next(self) -> Feed | None:
            return next(self.batches, None)

    settings: dict[str, Any] = {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "calibration": "MinMax",
        "calibration_texts": sum(len(f["input_ids"]) for f in calibration),
        # 7-bit weights avoid the u8×s8 saturation of pre-VNNI AVX2/AVX-512 kernels; with VNNI
        # the full range is exact and more accurate
        "reduce_range": not hardware.vnni(),
        "op_types": ["MatMul"],
        "matmul_const_b_only": True,
        "fp32_matmuls": len(ffn_out),  # the FFN outputs (after the GELU)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quantiser's advice to pre-process, and deprecations
        logging.getLogger().disabled, was = True, logging.getLogger().disabled  # it logs to root
        try:
            quantize_static(
                str(fp32),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=settings["reduce_range"],
                op_types_to_quantize=settings["op_types"],
                nodes_to_exclude=ffn_out,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.getLogger().disabled = was
    return settings
