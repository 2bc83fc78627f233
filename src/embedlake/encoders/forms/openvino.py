"""Making the openvino-fp32, openvino-bf16 and openvino-int8 forms (build time, needs torch).

They start from the ONNX forms' one export and fusion (``forms/onnx.py``, shared through
``export_cache``): fp32 and bf16 from the fused fp32 graph, int8 from the same statically
quantised QDQ graph as onnx-int8 (so its vectors never depend on the batch either). OpenVINO reads
onnxruntime's fused operators (SkipLayerNormalization, BiasGelu) and fuses further at compile time;
the graph is converted once to OpenVINO's IR (``ov.convert_model``), weights kept in fp32
(``compress_to_fp16=False``: the bf16 form rounds once, at compile time, not twice). bf16 is not
a different file: it is the fp32 graph compiled with ``INFERENCE_PRECISION_HINT=bf16``, which
``serving.json``'s precision asks for. Verified against sentence-transformers on the probe texts,
like the ONNX forms.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedlake.encoders.forms import onnx as onnx_forms
from embedlake.encoders.forms.source import Source
from embedlake.encoders.onnx import TOKENIZER, ServingConfig
from embedlake.encoders.openvino import HINTS, MODEL_XML, OpenVinoEncoder
from embedlake.errors import InputError

log = logging.getLogger(__name__)

# Minimum cosine to sentence-transformers on the probe texts (the tests check the promises of
# forms.FORMS on hundreds of real texts). bf16: measured 0.9999 here; int8 as onnx-int8.
MIN_COSINE = {"fp32": 0.999, "bf16": 0.99, "int8": 0.95}


def make(
    source: Path,
    out: Path,
    info: Source,
    *,
    precision: str,
    form: str,
    max_seq_length: int,
    calibration: Sequence[str] | None = None,
    export_cache: Path | None = None,
) -> dict[str, Any]:
    """The form in ``out`` (see ``forms.make``)."""
    import openvino as ov

    if precision not in MIN_COSINE:
        raise InputError(f"OpenVINO forms are {', '.join(MIN_COSINE)}, not {precision}")
    if not (source / TOKENIZER).is_file():
        raise InputError(f"{source}: no {TOKENIZER} (OpenVINO forms need a fast tokenizer)")
    with tempfile.TemporaryDirectory(prefix="embedlake-openvino-") as tmp:
        fused, inputs, details = onnx_forms.exported(source, Path(tmp), export_cache)
        graph = fused
        if precision == "int8":
            graph, details["quantization"] = onnx_forms.quantize(
                fused, source, inputs, max_seq_length, calibration, export_cache
            )
        try:
            model = ov.convert_model(str(graph))
            ov.save_model(model, str(out / MODEL_XML), compress_to_fp16=False)
        except Exception as exc:  # OpenVINO's frontends raise their own bare types
            raise InputError(f"{source}: OpenVINO could not convert the export: {exc}") from exc
    shutil.copyfile(source / TOKENIZER, out / TOKENIZER)
    details["openvino"] = {
        "version": ov.get_version(),
        "converted_from": "onnx-int8's QDQ graph" if precision == "int8" else "the fused export",
        "inference_precision_hint": HINTS[precision],
    }
    ServingConfig(
        dim=info.dim,
        max_seq_length=max_seq_length,
        pooling=info.pooling,
        normalize=info.normalize,
        precision=precision,
        inputs=inputs,
        form=form,
        details=details,
    ).write(out)
    details["probe_min_cosine"] = onnx_forms.verify(
        source, out, MIN_COSINE[precision], max_seq_length, encoder=OpenVinoEncoder
    )
    return {"dim": info.dim, **details}
