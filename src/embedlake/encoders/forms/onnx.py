"""Making the onnx-fp32 and onnx-int8 forms: export, fuse, quantise, verify (build time, needs torch).

- Export: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), batch and token axes
  dynamic, weights inside the one file. The TorchScript exporter (``dynamo=False``) traces the
  attention-mask construction of transformers 5 with the example's shape baked in: its graph gives
  wrong states for padded batches (max error 1.3 on MiniLM), so it is not used.
- Fuse: onnxruntime's transformer optimizer (SkipLayerNormalization, BiasGelu), offline level 0:
  the CPU-specific rewrites happen at load time on the serving machine.
- Quantise (int8): static, calibrated on the collection's own texts, so that a vector never
  depends on its batch (``forms/int8.py``; docs/decisions/0019-forms-selection-and-static-int8.md).
  One export and fusion serves both ONNX forms of a build and the OpenVINO forms (``export_cache``),
  and one calibrated int8 graph both int8 forms.
- Verify: the form's vectors against sentence-transformers on probe texts; a form that drifts
  past its tolerance is refused, not written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.encoders.forms import int8
from embedlake.encoders.forms.source import Source
from embedlake.encoders.onnx import MODEL, TOKENIZER, OnnxEncoder, ServingConfig
from embedlake.errors import InputError

log = logging.getLogger(__name__)

OPSET = 18
# Probe texts for the build-time check: short and long, with and without padding in a batch.
PROBES = [
    "heat transfer in a laminar boundary layer",
    "What are the effects of sweep on the stall of a wing?",
    "a",
    " ".join(["the flow of a compressible gas past a slender body at supersonic speed"] * 30),
]
# Minimum cosine to sentence-transformers on the probes; the tests check the same promise on
# hundreds of real texts (tests/integration/test_serving_forms.py).
MIN_COSINE = {"fp32": 0.999, "int8": 0.95}
# Calibration texts where the caller has none of its collection's own (tests, the benchmark): the
# probes, and sentences of several domains and lengths
DEFAULT_CALIBRATION = [
    *PROBES,
    "The patient was treated with antibiotics and recovered within two weeks.",
    "Quarterly earnings rose 4% as demand for memory chips recovered in Asia.",
    "How do I reset my password?",
    "The committee will meet on Tuesday to discuss the revised budget for the library.",
    " ".join(["Cells were cultured in medium with serum and the growth rate was measured"] * 12),
    "information retrieval evaluation with graded relevance judgments",
    "Large language models are trained on text from the web, books and code.",
]


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
    """The form in ``out``. ``calibration``: texts for the int8 form's activation ranges (the
    collection's own; else ``DEFAULT_CALIBRATION``). ``export_cache``: a folder where the fused
    fp32 export is kept for the next ONNX form of the same source (one export per build)."""
    if precision not in MIN_COSINE:
        raise InputError(f"ONNX forms are fp32 or int8, not {precision}")
    if not (source / TOKENIZER).is_file():
        raise InputError(f"{source}: no {TOKENIZER} (ONNX forms need a fast tokenizer)")
    with tempfile.TemporaryDirectory(prefix="embedlake-onnx-") as tmp:
        fused, inputs, details = exported(source, Path(tmp), export_cache)
        if precision == "int8":
            quantized, details["quantization"] = quantize(
                fused, source, inputs, max_seq_length, calibration, export_cache
            )
            shutil.copyfile(quantized, out / MODEL)
        else:
            shutil.copyfile(fused, out / MODEL)
    shutil.copyfile(source / TOKENIZER, out / TOKENIZER)
    config = ServingConfig(
        dim=info.dim,
        max_seq_length=max_seq_length,
        pooling=info.pooling,
        normalize=info.normalize,
        precision=precision,
        inputs=inputs,
        form=form,
        details=details,
    )
    config.write(out)
    details["probe_min_cosine"] = verify(source, out, MIN_COSINE[precision], max_seq_length)
    return {"dim": info.dim, **details}


def exported(
    source: Path, tmp: Path, cache: Path | None
) -> tuple[Path, tuple[str, ...], dict[str, Any]]:
    """The source exported and fused (from ``cache`` when an earlier form of this build made it):
    the fused model's path, its inputs, and how it was made."""
    folder = cache if cache is not None else tmp
    fused, facts = folder / "fused.onnx", folder / "export.json"
    if cache is not None and fused.is_file() and facts.is_file():
        known = json.loads(facts.read_text(encoding="utf-8"))
        return fused, tuple(known["inputs"]), dict(known["details"])
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "exported.onnx"
    inputs, details = export(source, raw)
    details["fusions"] = fuse(raw, fused, source)
    raw.unlink()
    facts.write_text(json.dumps({"inputs": inputs, "details": details}), encoding="utf-8")
    return fused, inputs, details


def quantize(
    fused: Path,
    source: Path,
    inputs: Sequence[str],
    max_seq_length: int,
    calibration: Sequence[str] | None,
    cache: Path | None,
) -> tuple[Path, dict[str, Any]]:
    """The fused export statically quantised on the calibration texts (``DEFAULT_CALIBRATION``
    where none): the int8 model's path (beside ``fused``, which is in ``cache`` or a temporary
    folder) and how it was made. Kept in ``cache`` for the next int8 form of the build (onnx-int8
    and openvino-int8 serve the same quantised graph), keyed by what it was calibrated on."""
    texts = list(calibration or DEFAULT_CALIBRATION)
    key = hashlib.sha256(json.dumps([texts, max_seq_length]).encode("utf-8")).hexdigest()[:16]
    path, facts = fused.parent / f"int8-{key}.onnx", fused.parent / f"int8-{key}.json"
    if cache is not None and path.is_file() and facts.is_file():
        return path, dict(json.loads(facts.read_text(encoding="utf-8")))
    feeds = int8.feeds(texts, source / TOKENIZER, inputs, max_seq_length)
    settings = int8.quantize(fused, path, feeds)
    facts.write_text(json.dumps(settings), encoding="utf-8")
    return path, settings


def export(source: Path, path: Path) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The source's transformer as ONNX: (token inputs it takes, how it was exported)."""
    import torch
    from transformers import AutoModel

    # eager attention: a plain MatMul/Softmax graph that onnxruntime's optimizer understands
    model = AutoModel.from_pretrained(
        str(source), attn_implementation="eager", local_files_only=True
    ).eval()
    takes_types = int(getattr(model.config, "type_vocab_size", 0) or 0) > 0
    names = ("input_ids", "attention_mask", *(("token_type_ids",) if takes_types else ()))

    class States(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            state: torch.Tensor = self.model(**dict(zip(names, args, strict=True)))[0]
            return state

    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens", max=4096)
    exporter_log = logging.getLogger("torch.onnx")  # "torchvision is not installed", ...
    level = exporter_log.level
    with warnings.catch_warnings(), torch.no_grad():
        # the exporter warns about its own internals (pytree specs, renamed axes)
        warnings.simplefilter("ignore")
        exporter_log.setLevel(logging.ERROR)
        try:
            torch.onnx.export(
                States(),
                example,
                str(path),
                input_names=list(names),
                output_names=["token_embeddings"],
                dynamic_shapes=(tuple({0: batch, 1: tokens} for _ in names),),  # one *args
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # torch.export raises many unrelated types
            raise InputError(f"{source}: the ONNX export failed: {exc}") from exc
        finally:
            exporter_log.setLevel(level)
    exporter = {"exporter": "torch.onnx.export(dynamo=True)", "opset": OPSET}
    return names, {**exporter, "torch": torch.__version__, "model_type": model.config.model_type}


def fuse(raw: Path, out: Path, source: Path) -> dict[str, int]:
    """onnxruntime's transformer fusions where it knows the architecture, else a plain copy."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "")
    if model_type not in ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra"):
        log.info("no transformer fusions for model type %r; exporting it unfused", model_type)
        shutil.copyfile(raw, out)
        return {}
    optimised = optimize_model(
        str(raw),
        model_type="bert" if model_type in ("roberta", "xlm-roberta", "electra") else model_type,
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
        opt_level=0,
    )
    optimised.save_model_to_file(str(out), use_external_data_format=False)
    stats = optimised.get_fused_operator_statistics()
    return {name: int(n) for name, n in stats.items() if n}


def verify(
    source: Path,
    folder: Path,
    min_cosine: float,
    max_seq_length: int,
    encoder: type[OnnxEncoder] = OnnxEncoder,
) -> float:
    """The lowest cosine between the form (loaded as ``encoder``) and sentence-transformers on the
    probe texts."""
    from embedlake.encoders.sentence_transformers import SentenceTransformerEncoder

    reference = SentenceTransformerEncoder(source, device="cpu", max_seq_length=max_seq_length)
    expected = reference.encode(PROBES, batch_size=4)
    got = encoder(folder).encode(PROBES, batch_size=4)
    worst = float(np.min(np.sum(expected * got, axis=1)))
    if worst < min_cosine:
        raise InputError(
            f"{source}: the {encoder.kind} form disagrees with sentence-transformers (lowest cosine "
            f"{worst:.4f} on probe texts, expected ≥ {min_cosine})"
        )
    return round(worst, 5)
