"""Encoder kind ``onnx``: a transformer exported to ONNX, served by ONNX Runtime without torch.

Only ``onnxruntime``, ``tokenizers`` and numpy are imported here (the light serving install); the
export lives in ``encoders/forms/onnx.py``. A folder holds::

    model.onnx       the transformer: token ids in, token states (batch × tokens × dim) out
    tokenizer.json   the Hugging Face fast tokenizer of the source model
    serving.json     how to use them (``ServingConfig``): inputs, pooling, max length, precision

Texts are tokenised in one multi-threaded ``encode_batch`` call per chunk, sorted by token count and
batched, each batch padded only to its own longest text: short texts do not pay for the padding of
long ones, which is most of the cost when lengths are mixed. Rows come back in input order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from embedlake.encoders import TokenWindow, Vectors, counting_tokenizer, normalise
from embedlake.errors import InputError
from embedlake.machine import threads as default_threads

KIND = "onnx"
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
SERVING = "serving.json"
POOLINGS = ("mean", "cls")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# texts tokenised per encode_batch call: enough to keep the tokenizer's threads busy, small enough
# that a shard of a million documents never holds a million Encoding objects at once
_CHUNK = 4096

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingConfig:
    """``serving.json``: what the loader must know that the ONNX graph does not say."""

    dim: int
    max_seq_length: int
    pooling: str = "mean"  # over the attention mask; "cls": the first token's state
    normalize: bool = True
    precision: str = "fp32"
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    form: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # how it was made (exporter, quantiser)

    def write(self, folder: Path) -> None:
        payload = {**asdict(self), "inputs": list(self.inputs)}
        (folder / SERVING).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> ServingConfig:
        path = folder / SERVING
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{folder}: no {SERVING} (an ONNX model folder needs one)") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not readable JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}: must hold a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"{path}: unknown fields {', '.join(unknown)}")
        try:
            config = cls(**{**raw, "inputs": tuple(raw.get("inputs", INPUTS))})
        except TypeError as exc:
            raise InputError(f"{path}: {exc}") from None
        if config.pooling not in POOLINGS:
            raise InputError(f"{path}: pooling {config.pooling!r} is not one of {POOLINGS}")
        if not set(config.inputs) <= set(INPUTS) or "input_ids" not in config.inputs:
            raise InputError(f"{path}: inputs {list(config.inputs)} must be among {INPUTS}")
        if config.dim < 1 or config.max_seq_length < 1:
            raise InputError(f"{path}: dim and max_seq_length must be positive")
        return config


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Fusions and layout changes are applied at load time for this CPU, not baked into the file:
    # an artifact optimised for one instruction set may run slower (or not at all) on another.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1  # one graph at a time: the batch is the parallel unit
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


class OnnxEncoder:
    kind = KIND
    files: tuple[str, ...] = (MODEL,)  # the model's files in the folder, besides the tokenizer

    def __init__(
        self,
        folder: Path,
        *,
        threads: int | None = None,
        max_seq_length: int | None = None,
        device: str = "cpu",
    ) -> None:
        # ONNX forms run on the CPU provider (the light install has no CUDA runtime); ``device``
        # is accepted so that callers may pass every kind the same options. On a GPU node the
        # cuda-fp16 form is the one to serve.
        if device not in ("cpu", "auto"):
            log.info("ONNX form %s runs on the CPU, not on %s", folder, device)
        self.config = ServingConfig.read(folder)
        for name in (*self.files, TOKENIZER):
            if not (folder / name).is_file():
                raise InputError(f"{folder}: no {name} (an {self.kind} model folder needs one)")
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise InputError(f"{folder / TOKENIZER}: not a loadable tokenizer: {exc}") from None
        self.output = self._open(folder, threads)
        self.dim = self.config.dim
        self.max_seq_length = min(
            max_seq_length or self.config.max_seq_length, self.config.max_seq_length
        )
        self.tokenizer.no_padding()  # padding is done per batch below
        self.tokenizer.enable_truncation(self.max_seq_length)
        padding = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if padding is None else padding
        self._window: TokenWindow | None = None

    def token_window(self) -> TokenWindow:
        if self._window is None:
            self._window = TokenWindow(counting_tokenizer(self.tokenizer), self.max_seq_length)
        return self._window

    def _open(self, folder: Path, threads: int | None) -> str:
        """Load the model file for this runtime; the name of the token-states output."""
        try:
            self.session = ort.InferenceSession(
                str(folder / MODEL), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's pybind errors share no useful base class
            raise InputError(f"{folder / MODEL}: not a loadable ONNX model: {exc}") from None
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(self.config.inputs):
            raise InputError(
                f"{folder}: {MODEL} takes inputs {sorted(graph_inputs)}, {SERVING} says "
                f"{sorted(self.config.inputs)}"
            )
        output = self.session.get_outputs()[0]
        width = output.shape[-1] if output.shape else None
        if len(output.shape) != 3 or (isinstance(width, int) and width != self.config.dim):
            raise InputError(
                f"{folder}: {MODEL} outputs {output.name} of shape {output.shape}, expected "
                f"(batch, tokens, {self.config.dim})"
            )
        return str(output.name)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            chunk = list(texts[start : start + _CHUNK])
            encodings = self.tokenizer.encode_batch(chunk)
            order = np.argsort([len(e.ids) for e in encodings], kind="stable")
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                out[start + rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: Sequence[Encoding]) -> Vectors:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feed: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        feed["token_type_ids"] = np.zeros_like(ids)
        states = self._states({k: feed[k] for k in self.config.inputs})
        if self.config.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise(pooled) if self.config.normalize else pooled.astype(np.float32)

    def _states(self, feed: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        """The token states (batch × tokens × dim) of one padded batch."""
        states: npt.NDArray[np.float32] = self.session.run([self.output], feed)[0]
        return states


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> OnnxEncoder:
    return OnnxEncoder(folder, **options)
