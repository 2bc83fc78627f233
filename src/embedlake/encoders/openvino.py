"""Encoder kind ``openvino``: a transformer in OpenVINO's format, served by OpenVINO without torch.

The tokenisation, length-sorted batching and pooling are ``OnnxEncoder``'s; only the runtime that
turns token ids into token states differs. A folder holds::

    model.xml, model.bin  the transformer (OpenVINO IR, fp32 weights; the int8 form's carry its
                          fixed quantisation): token ids in, token states out
    tokenizer.json        the Hugging Face fast tokenizer of the source model
    serving.json          how to use them (``ServingConfig``); its precision picks the
                          ``INFERENCE_PRECISION_HINT`` the model is compiled with

Compiled for latency: one stream (one request at a time, as the API encodes a query) on
``INFERENCE_NUM_THREADS`` threads, by default every core this process may use or
``OMP_NUM_THREADS`` where set (``machine.threads``; see
docs/decisions/0021-openvino-forms.md for the measurements). The precision is always set: on a CPU
with native bf16, OpenVINO's default is bf16, so an fp32 form must ask for f32.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedlake import machine
from embedlake.encoders import hardware
from embedlake.encoders.onnx import SERVING, OnnxEncoder
from embedlake.errors import InputError

KIND = "openvino"
MODEL_XML, MODEL_BIN = "model.xml", "model.bin"
# serving.json's precision → OpenVINO's inference precision (int8: the graph's own quantisation
# fixes the int8 parts; what it leaves in floating point runs in f32)
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

log = logging.getLogger(__name__)


def installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@cache
def capabilities() -> frozenset[str]:
    """OpenVINO's CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``BF16``, ``INT8``, ...)."""
    import openvino as ov

    return frozenset(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def native_bf16() -> bool:
    """bf16 inference that is both in hardware (``hardware.native_bf16``) and supported by this
    OpenVINO's CPU plugin; elsewhere a bf16 hint would be emulated or refused."""
    return hardware.native_bf16() and installed() and "BF16" in capabilities()


def compile_config(precision: str, threads: int | None = None) -> dict[str, Any]:
    """The CPU plugin's settings for a latency-oriented server."""
    if precision not in HINTS:
        raise InputError(f"OpenVINO forms are {', '.join(HINTS)}, not {precision}")
    return {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads or machine.threads(),
        "INFERENCE_PRECISION_HINT": HINTS[precision],
    }


class OpenVinoEncoder(OnnxEncoder):
    kind = KIND
    files = (MODEL_XML, MODEL_BIN)

    def _open(self, folder: Path, threads: int | None) -> str:
        import openvino as ov

        if self.config.precision == "bf16" and not native_bf16():
            raise InputError(
                f"{folder}: a bf16 OpenVINO form needs a CPU with native bf16 that OpenVINO "
                "supports; serve another form of the model here"
            )
        config = compile_config(self.config.precision, threads)
        try:
            core = ov.Core()
            model = core.read_model(str(folder / MODEL_XML), str(folder / MODEL_BIN))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own bare types
            raise InputError(
                f"{folder / MODEL_XML}: not a loadable OpenVINO model: {exc}"
            ) from None
        running = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if running != config["INFERENCE_PRECISION_HINT"]:  # the plugin chose otherwise
            log.warning(
                "OpenVINO form %s asked for %s inference and runs %s",
                folder,
                config["INFERENCE_PRECISION_HINT"],
                running,
            )
        graph_inputs = {i.get_any_name() for i in self.compiled.inputs}
        if graph_inputs != set(self.config.inputs):
            raise InputError(
                f"{folder}: {MODEL_XML} takes inputs {sorted(graph_inputs)}, {SERVING} says "
                f"{sorted(self.config.inputs)}"
            )
        output = self.compiled.output(0)
        shape = output.get_partial_shape()
        width = shape[shape.rank.get_length() - 1] if shape.rank.is_static else None
        if (
            not shape.rank.is_static
            or shape.rank.get_length() != 3
            or (width is not None and width.is_static and width.get_length() != self.config.dim)
        ):
            raise InputError(
                f"{folder}: {MODEL_XML} outputs a tensor of shape {shape}, expected "
                f"(batch, tokens, {self.config.dim})"
            )
        # one request, reused under a lock: a request is not thread-safe (an onnxruntime session
        # is), and with one stream a second request would only queue behind the first
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()
        log.debug("OpenVINO form %s compiled with %s", folder, config)
        return str(output.get_any_name())

    def _states(self, feed: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        with self.lock:
            result = self.request.infer(feed)
            # the request's output buffer is reused by the next call: copy out of it
            return np.array(result[self.compiled.output(0)], dtype=np.float32, copy=True)


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> OpenVinoEncoder:
    return OpenVinoEncoder(folder, **options)
