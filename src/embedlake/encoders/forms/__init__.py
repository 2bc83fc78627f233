"""Serving forms of a sentence-transformers encoder: the same model, made fast for where it runs.

A *form* is a folder that ``embedlake.encoders.load_folder`` loads, made from a sentence-transformers
folder (the *source*) by ``make``; ``available`` says which forms this machine can make and serve:

    form          kind                   runs with                     vectors vs torch-fp32
    torch-fp32    sentence-transformers  torch (the reference)         identical
    torch-bf16    sentence-transformers  torch, CPU with native bf16   mean cosine ≥ 0.995
    cuda-fp16     sentence-transformers  torch, CUDA device            mean cosine ≥ 0.995
    onnx-fp32     onnx                   onnxruntime + tokenizers      min cosine ≥ 0.999
    onnx-int8     onnx                   onnxruntime + tokenizers      mean cosine ≥ 0.985
                                         (static int8, calibrated)
    openvino-fp32 openvino               OpenVINO + tokenizers         min cosine ≥ 0.999
    openvino-bf16 openvino               OpenVINO, CPU with native     mean cosine ≥ 0.995
                                         bf16 that OpenVINO supports
    openvino-int8 openvino               OpenVINO (onnx-int8's graph)  mean cosine ≥ 0.985
    static        model2vec              model2vec (numpy)             another model: a fast first
                                                                       stage, not a replacement

Making a form needs the full install (torch, transformers, onnx, model2vec's distiller); serving the
onnx and static forms needs only the light one, the openvino forms the light one plus the
``openvino`` extra (docs/decisions/0021-openvino-forms.md). No form's vectors depend on the batch
a text is encoded in (the int8 forms are quantised statically for that). Every form folder holds a
``serving.json`` naming its form, so that two forms of one model never share a content hash (and
so a cached encoder).
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlake.encoders import hardware
from embedlake.encoders.forms.source import SERVING, describe
from embedlake.errors import ConfigError, InputError

log = logging.getLogger(__name__)

REFERENCE = "torch-fp32"


@dataclass(frozen=True)
class Form:
    name: str
    kind: str
    precision: str
    tolerance: str  # what its vectors promise against the reference (checked by the tests)


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("torch-fp32", "sentence-transformers", "fp32", "identical"),
        Form("torch-bf16", "sentence-transformers", "bf16", "mean cosine >= 0.995"),
        Form("cuda-fp16", "sentence-transformers", "fp16", "mean cosine >= 0.995"),
        Form("onnx-fp32", "onnx", "fp32", "min cosine >= 0.999"),
        Form("onnx-int8", "onnx", "int8", "mean cosine >= 0.985"),
        Form("openvino-fp32", "openvino", "fp32", "min cosine >= 0.999"),
        Form("openvino-bf16", "openvino", "bf16", "mean cosine >= 0.995"),
        Form("openvino-int8", "openvino", "int8", "mean cosine >= 0.985"),
        Form("static", "model2vec", "fp32", "another model (top-10 overlap reported)"),
    )
}


def form(name: str) -> Form:
    try:
        return FORMS[name]
    except KeyError:
        raise ConfigError(f"serving form {name!r} is unknown (known: {', '.join(FORMS)})") from None


def needs_torch(name: str) -> bool:
    """Whether serving the form needs torch (the `models` extra), not only the light install."""
    return form(name).kind == "sentence-transformers"


def unavailable_reason(name: str) -> str | None:
    """Why this machine cannot make and serve the form, or None when it can."""
    spec = form(name)
    if spec.kind == "openvino":
        from embedlake.encoders import openvino

        if not openvino.installed():
            return "needs openvino (pip install 'embedlake[openvino]')"
        if spec.precision == "bf16" and not openvino.native_bf16():
            return "needs a CPU with native bfloat16 (avx512_bf16 or amx_bf16) and OpenVINO's BF16"
    if name == "torch-bf16" and not hardware.native_bf16():
        return "needs a CPU with native bfloat16 (avx512_bf16 or amx_bf16)"
    if name == "cuda-fp16" and not hardware.cuda():
        return "needs a CUDA device"
    return None


def available(*, static: bool = True) -> list[str]:
    """The forms this machine can make and serve, reference first. ``static=False`` leaves out the
    model2vec form, which is another (much weaker) model rather than a faster copy."""
    return [
        name for name in FORMS if unavailable_reason(name) is None and (static or name != "static")
    ]


def make(
    form_name: str,
    source: Path,
    out: Path,
    *,
    max_seq_length: int = 256,
    calibration: Sequence[str] | None = None,
    export_cache: Path | None = None,
) -> dict[str, Any]:
    """Write the form ``form_name`` of the sentence-transformers folder ``source`` into ``out``
    (which must not exist or be empty), and return the manifest fields that describe it: kind,
    dim, form, precision, max_seq_length (and how it was made, under ``serving``).
    ``calibration``: texts of the collection the form will serve (the int8 form's activation
    ranges); ``export_cache``: a folder the ONNX forms of one build share their export in."""
    spec = form(form_name)
    reason = unavailable_reason(form_name)
    if reason is not None:
        raise ConfigError(f"serving form {form_name} cannot be made here: it {reason}")
    info = describe(source)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: the output folder of a serving form must be new or empty")
    out.mkdir(parents=True, exist_ok=True)
    max_seq_length = min(max_seq_length, info.max_position)
    try:
        if spec.kind == "sentence-transformers":
            details = _torch(spec, source, out, max_seq_length)
        elif spec.kind in ("onnx", "openvino"):  # both from the build's one ONNX export
            maker = importlib.import_module(f"embedlake.encoders.forms.{spec.kind}")
            details = maker.make(
                source,
                out,
                info,
                precision=spec.precision,
                form=spec.name,
                max_seq_length=max_seq_length,
                calibration=calibration,
                export_cache=export_cache,
            )
        else:
            from embedlake.encoders.forms.static import make as make_static

            details = make_static(source, out, form=spec.name, max_seq_length=max_seq_length)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave half a form that looks loadable
        raise
    dim = int(details.pop("dim", info.dim))
    log.info("made serving form %s of %s in %s", spec.name, source, out)
    return {
        "kind": spec.kind,
        "dim": dim,
        "form": spec.name,
        "precision": spec.precision,
        "max_seq_length": max_seq_length,
        "serving": details,
    }


def _torch(spec: Form, source: Path, out: Path, max_seq_length: int) -> dict[str, Any]:
    """A copy of the source folder plus its ``serving.json``: the loader casts at load time, so
    the weights stay fp32 on disk and one artifact serves CPU and GPU alike."""
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(SERVING))
    details = {"form": spec.name, "precision": spec.precision, "max_seq_length": max_seq_length}
    (out / SERVING).write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
    return {}
