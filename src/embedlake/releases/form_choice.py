"""A release's serving form: the fastest form of its model that keeps the model's quality.

Each candidate form (``serving.forms``, those this machine can run) is made from the model's folder
(the ONNX forms from one export) and measured against the model itself on a bounded sample of the
release's own data (``form_eval``), then judged by ``form_rule``:

- speed: the model and every form encode the same ``serving.speed_documents`` documents in
  ``serving.speed_rounds`` interleaved rounds, timed by the process's CPU seconds (wall seconds
  where a CUDA device does the work); a form is faster only when it was faster in every round (its
  speed-up beyond the spread of the per-round ratios, which the report gives);
- quality, on each gate dataset: per-query nDCG@10 against the model's on the same queries; refused
  when significantly worse (one-sided Wilcoxon signed-rank, ``serving.significance``) or when the
  point loss is beyond the policy ``serving.max_ndcg_loss``. Without gate datasets, a form must
  instead keep a mean cosine of ``COSINE_MEAN`` and a min of ``COSINE_MIN`` to the model;
- quality is measured fastest form first and stops at the first that passes (and any whose speed
  lies within its spread): a slower form could not be chosen anyway.

The chosen form is registered as a model of its own (``<name>.<form>@<version>``) and the release is
built with it: its corpus vectors and its queries both come from that form, never a mix.

With ``serving.torch_free`` the search nodes have no torch: only forms served without it compete,
the fastest passing one serves even where the model is faster, and with none passing the build
fails rather than publish a release those nodes cannot serve.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.catalog.registry import ModelRecord
from embedlake.encoders import Encoder, forms, hardware, load_folder
from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.models import artifacts
from embedlake.releases.form_eval import Evaluation, Scored
from embedlake.releases.form_rule import REFERENCE, Quality, Speed, paired, pick, speedups
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)
COSINE_MEAN, COSINE_MIN = 0.995, 0.98  # the rule when no gate dataset is registered


def choose(ws: Workspace, model_ref: str, held_out: dict[str, list[str]]) -> dict[str, Any]:
    """``{"model": the ref to build the release with, "report": the numbers and the choice}``."""
    started = time.perf_counter()
    model = ws.catalog.registry.model(model_ref)
    torch_free = ws.settings.serving.torch_free
    wanted, skipped = _candidates(ws, model)
    why = _no_forms(model, wanted)
    if why is not None:
        return {"model": model.ref, "report": {"form": REFERENCE, "why": why, "skipped": skipped}}
    evaluation = Evaluation.of(ws, held_out)
    with tempfile.TemporaryDirectory(prefix="embedlake-forms-") as tmp:
        made = _make(ws, model, wanted, skipped, evaluation, Path(tmp))
        seconds = {"make": round(time.perf_counter() - started, 1)}
        judged = _Judged(ws, model, made, evaluation)
        seconds["speed"] = round(judged.speed_seconds, 1)
        seconds["quality"] = round(judged.quality_seconds, 1)
        seconds["total"] = round(time.perf_counter() - started, 1)
        chosen = judged.chosen
        if chosen == REFERENCE and torch_free:
            raise InputError(
                f"serving.torch_free: no torch-free form of {model.ref} keeps its quality "
                f"({judged.summary()}); the live release stays. Widen serving.max_ndcg_loss, or "
                "serve the model with torch (serving.torch_free = false)"
            )
        report = {
            "form": chosen,
            "of": model.ref,
            "rule": _rule(ws, evaluation),
            "forms": judged.rows,
            "skipped": skipped,
            "evaluation": evaluation.describe(),
            "timing": judged.timing(),
            "seconds": seconds,
        }
        log.info("serving forms of %s measured in %.1f s: %s", model.ref, seconds["total"], seconds)
        if chosen == REFERENCE:
            log.info("serving form of %s: the model itself (no form passed and was faster)", model)
            return {"model": model.ref, "report": report}
        folder, fields = made[chosen]
        record = _register(ws, model, chosen, folder, fields, judged.rows[chosen])
    log.info("serving form of %s: %s (%s)", model.ref, chosen, record.ref)
    return {"model": record.ref, "report": {**report, "model": record.ref}}


def _candidates(ws: Workspace, model: ModelRecord) -> tuple[list[str], dict[str, str]]:
    """The configured forms that can be made here, and the others with the reason. With
    ``serving.torch_free``, a model that would need torch to serve is refused here."""
    torch_free = ws.settings.serving.torch_free
    skipped: dict[str, str] = {}
    for name in ws.settings.serving.forms:
        reason = forms.unavailable_reason(name)
        if reason is None and torch_free and forms.needs_torch(name):
            reason = "needs torch (serving.torch_free)"
        if reason is not None:
            skipped[name] = reason
    wanted: list[str] = [f for f in ws.settings.serving.forms if f not in skipped]
    form_already = model.manifest.get("form")
    if torch_free and model.kind == "sentence-transformers" and (form_already or not wanted):
        fix = (
            f"is its {form_already} form: release the model it was made of instead"
            if form_already
            else "serving.forms names no torch-free form: add onnx-fp32, onnx-int8 or an openvino form"
        )
        raise ConfigError(f"serving.torch_free: {model.ref} needs torch to serve, and {fix}")
    return wanted, skipped


def _no_forms(model: ModelRecord, wanted: list[str]) -> str | None:
    """Why the model serves as it is without measuring anything, or None."""
    if model.kind != "sentence-transformers":
        return f"a {model.kind} model has no serving forms"
    if model.manifest.get("form"):
        return "it is a serving form already"
    if not wanted:
        return "no serving form is configured or runnable here"
    return None


def _make(
    ws: Workspace,
    model: ModelRecord,
    wanted: list[str],
    skipped: dict[str, str],
    evaluation: Evaluation,
    tmp: Path,
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each wanted form made under ``tmp`` (a form that cannot be made is skipped, with why). The
    int8 form is calibrated on the speed sample: the collection's own texts."""
    source = artifacts.materialise(ws, model)
    made: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name in wanted:
        folder = tmp / name
        try:
            fields = forms.make(
                name,
                source,
                folder,
                max_seq_length=ws.settings.embed.max_seq_length,
                calibration=evaluation.speed_texts,
                export_cache=tmp / "export",
            )
        except InputError as exc:  # a model no form can be made of: served as it is
            log.warning("serving form %s of %s: %s", name, model.ref, exc)
            skipped[name] = str(exc)
            continue
        made[name] = (folder, fields)
    return made


class _Judged:
    """The forms timed against the model, then judged fastest first until one passes."""

    def __init__(
        self,
        ws: Workspace,
        model: ModelRecord,
        made: dict[str, tuple[Path, dict[str, Any]]],
        evaluation: Evaluation,
    ) -> None:
        settings, batch = ws.settings.serving, ws.settings.embed.batch_size
        self.evaluation, self.settings = evaluation, settings
        encoders: dict[str, Encoder] = {REFERENCE: artifacts.load_encoder(ws, model)}
        for name, (folder, fields) in made.items():
            encoders[name] = load_folder(
                folder, fields, **artifacts.encoder_options(ws, fields["kind"])
            )
        started = time.perf_counter()
        self.load = os.getloadavg()
        self.wall, self.cpu = evaluation.time_rounds(encoders, batch, settings.speed_rounds)
        # CPU seconds on a CPU: on a busy machine a round's wall time swung 8–30 s where its CPU
        # time stayed within ±10% (docs/decisions/0019); on a GPU the work is not CPU time
        self.basis = "wall" if hardware.cuda() else "cpu"
        self.speeds: dict[str, Speed] = speedups(self.wall if self.basis == "wall" else self.cpu)
        self.speed_seconds = time.perf_counter() - started
        started = time.perf_counter()
        self.rows: dict[str, dict[str, Any]] = {REFERENCE: self._speed_row(REFERENCE)}
        reference: Scored | None = None  # scored once, when the first form is judged
        passed: dict[str, bool] = {}
        fidelity: dict[str, float] = {}
        order = sorted(made, key=lambda n: -self.speeds[n].median)
        winner: str | None = None
        for name in order:
            row = self.rows[name] = self._speed_row(name)
            speed = self.speeds[name]
            if not (speed.faster or settings.torch_free):
                row["not_judged"] = "not faster than the model in every round"
                continue
            if winner is not None and not self.speeds[winner].ties(speed):
                row["not_judged"] = f"slower than {winner}, which passed"
                continue
            if reference is None:
                reference = evaluation.score(encoders[REFERENCE], batch)
                self.rows[REFERENCE]["ndcg@10"] = reference.means()
            scored = evaluation.score(encoders[name], batch)
            passed[name] = self._judge(row, scored, reference)
            fidelity[name] = row["cosine_mean"] if row["cosine_mean"] is not None else -1.0
            if passed[name] and winner is None:
                winner = name
        self.quality_seconds = time.perf_counter() - started
        self.chosen = pick(self.speeds, passed, fidelity, torch_free=settings.torch_free)

    def _speed_row(self, name: str) -> dict[str, Any]:
        rate = len(self.evaluation.speed_texts) / float(np.median(self.wall[name]))
        row: dict[str, Any] = {
            "docs_per_s": round(rate, 1),
            "cpu_s": round(float(np.median(self.cpu[name])), 3),
            "ndcg@10": None,  # filled where the form is judged (the demo prints every row's)
        }
        if name != REFERENCE:
            row.update(self.speeds[name].row())
        return row

    def _judge(self, row: dict[str, Any], scored: Scored, reference: Scored) -> bool:
        """Fill ``row`` with the form's quality against the model's; whether it passed."""
        same_space = scored.vectors.shape == reference.vectors.shape
        cosine = (
            np.einsum("ij,ij->i", scored.vectors, reference.vectors) if same_space else None
        )  # a static form has vectors of its own size (model2vec's PCA): no cosine
        row["cosine_mean"] = None if cosine is None else round(float(cosine.mean()), 5)
        row["cosine_min"] = None if cosine is None else round(float(cosine.min()), 5)
        row["ndcg@10"] = scored.means()
        quality: dict[str, Quality] = {
            d: paired(reference.per_query[d], scored.per_query[d]) for d in scored.per_query
        }
        row["quality"] = {d: q.row() for d, q in quality.items()}
        row["ndcg_loss"] = {d: round(q.loss, 5) for d, q in quality.items()}
        if quality:
            loss, alpha = self.settings.max_ndcg_loss, self.settings.significance
            ok = all(q.passed(loss, alpha) for q in quality.values())
        else:
            ok = cosine is not None and (
                float(cosine.mean()) >= COSINE_MEAN and float(cosine.min()) >= COSINE_MIN
            )
        row["passed"] = ok
        return ok

    def timing(self) -> dict[str, Any]:
        return {
            "rounds": self.settings.speed_rounds,
            "ruled_on": f"{self.basis} seconds",
            "documents": len(self.evaluation.speed_texts),
            "wall_s": {n: [round(s, 4) for s in v] for n, v in self.wall.items()},
            "cpu_s": {n: [round(s, 4) for s in v] for n, v in self.cpu.items()},
            "load_average": [round(x, 2) for x in self.load],
        }

    def summary(self) -> str:
        measured = {n: r for n, r in self.rows.items() if n != REFERENCE}
        parts = []
        for n, r in measured.items():
            if "not_judged" in r:
                parts.append(f"{n}: {r['not_judged']}")
                continue
            cos = "n/a (another vector size)" if r["cosine_mean"] is None else r["cosine_mean"]
            parts.append(
                f"{n}: nDCG@10 {r['quality'] or 'n/a (no gate dataset)'}, cosine mean {cos}"
            )
        return "; ".join(parts) or "no form could be made"


def _rule(ws: Workspace, evaluation: Evaluation) -> str:
    settings = ws.settings.serving
    speed = (
        f"faster than the model in each of {settings.speed_rounds} interleaved rounds on "
        f"{len(evaluation.speed_texts)} documents"
    )
    if evaluation.slices:
        rule = (
            f"fastest form not significantly worse than the model in per-query nDCG@10 (one-sided "
            f"Wilcoxon, p >= {settings.significance}) and losing at most {settings.max_ndcg_loss} "
            "(relative) on every gate dataset"
        )
    else:
        rule = (
            f"no gate dataset: fastest form with cosine to the model's vectors mean >= "
            f"{COSINE_MEAN} and min >= {COSINE_MIN}"
        )
    if settings.torch_free:
        return f"torch-free forms only (serving.torch_free), even if slower than the model: {rule}"
    return f"{rule}, and {speed}; a more faithful form whose speed-up lies within the fastest's spread wins"


def _register(
    ws: Workspace,
    model: ModelRecord,
    form: str,
    folder: Path,
    fields: dict[str, Any],
    row: dict[str, Any],
) -> ModelRecord:
    """The form as a model of its own, ``<name>.<form>@<version>``, naming what it was made of.
    Registered already (a retried build, or another release of the same model): that one, since an
    export need not be byte-identical twice and one version must keep one content."""
    name = artifacts.check_name(f"{model.name}.{form}")
    try:
        return ws.catalog.registry.model(f"{name}@{model.version}")
    except NotFound:
        pass
    extra: dict[str, Any] = {
        "form": form,
        "form_of": model.ref,
        "precision": fields["precision"],
        "max_seq_length": fields["max_seq_length"],
        "serving": fields.get("serving", {}),
        "evaluation": row,
        # what the model was trained from and on: the gate must hold out the same queries
        **{
            k: model.manifest[k] for k in ("base", "training_data", "params") if k in model.manifest
        },
    }
    return artifacts.publish_folder(
        ws,
        folder,
        name=name,
        kind=fields["kind"],
        version=model.version,
        extra=extra,
        options=artifacts.encoder_options(ws, fields["kind"]),
    )
