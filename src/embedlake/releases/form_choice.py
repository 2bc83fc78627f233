"""A release's serving form: the fastest form of its model that keeps the model's quality.

Each candidate form (``serving.forms``, those this machine can run) is made from the model's
folder and measured against the model itself on the release's own evaluation data:

- speed: documents per second on ``serving.speed_documents`` live documents (the same for all);
- fidelity: cosine of its vectors to the model's on the evaluation corpus (mean and min);
- quality: nDCG@10 of exact search on each gate dataset, over that dataset's evaluation corpus (its
  judged documents, then other live documents up to ``serving.eval_documents``).

The fastest form whose nDCG@10 is within ``serving.max_ndcg_loss`` (relative) of the model's on
every gate dataset, and faster than the model, is registered as a model of its own
(``<name>.<form>@<version>``) and the release is built with it: its corpus vectors and its queries
both come from that form, never a mix. Without gate datasets, a form must instead keep a mean
cosine of ``COSINE_MEAN`` and a min of ``COSINE_MIN`` to the model.

With ``serving.torch_free`` the search nodes have no torch: only forms served without it compete,
the fastest passing one serves even where the model is faster, and with none passing the build
fails rather than publish a release those nodes cannot serve.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.catalog.registry import ModelRecord
from embedlake.encoders import Encoder, Vectors, forms, load_folder
from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.evaluate import metrics
from embedlake.index import top_k
from embedlake.ingest.datasets import Dataset
from embedlake.models import artifacts
from embedlake.releases import gate
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)
REFERENCE = "model"  # the model itself, as registered
COSINE_MEAN, COSINE_MIN = 0.995, 0.98  # the rule when no gate dataset is registered
_TIMED_RUNS = 2  # speed: the best of this many passes (the first warms caches and threads)


def choose(ws: Workspace, model_ref: str, held_out: dict[str, list[str]]) -> dict[str, Any]:
    """``{"model": the ref to build the release with, "report": the numbers and the choice}``."""
    model = ws.catalog.registry.model(model_ref)
    torch_free = ws.settings.serving.torch_free
    wanted, skipped = _candidates(ws, model)
    why = _no_forms(model, wanted)
    if why is not None:
        return {"model": model.ref, "report": {"form": REFERENCE, "why": why, "skipped": skipped}}
    evaluation = _Evaluation.of(ws, held_out)
    with tempfile.TemporaryDirectory(prefix="embedlake-forms-") as tmp:
        rows, made = _measure(ws, model, wanted, skipped, evaluation, Path(tmp))
        chosen = pick(rows, torch_free=torch_free)
        if chosen == REFERENCE and torch_free:
            raise InputError(
                f"serving.torch_free: no torch-free form of {model.ref} keeps its quality "
                f"({_summary(rows)}); the live release stays. Widen serving.max_ndcg_loss, or serve "
                "the model with torch (serving.torch_free = false)"
            )
        report = {
            "form": chosen,
            "of": model.ref,
            "rule": _rule(ws, evaluation),
            "forms": rows,
            "skipped": skipped,
            "evaluation": evaluation.describe(),
        }
        if chosen == REFERENCE:
            log.info("serving form of %s: the model itself (no form passed and was faster)", model)
            return {"model": model.ref, "report": report}
        folder, fields = made[chosen]
        record = _register(ws, model, chosen, folder, fields, rows[chosen])
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
            else "serving.forms names no torch-free form: add onnx-fp32 or onnx-int8"
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


def _measure(
    ws: Workspace,
    model: ModelRecord,
    wanted: list[str],
    skipped: dict[str, str],
    evaluation: _Evaluation,
    tmp: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[Path, dict[str, Any]]]]:
    """Each wanted form made under ``tmp`` and measured against the model itself: the rows of
    the report (the model's first) and the forms made (a form that cannot be made is skipped)."""
    baseline = evaluation.measure(artifacts.load_encoder(ws, model), ws.settings.embed.batch_size)
    rows: dict[str, dict[str, Any]] = {REFERENCE: baseline.row()}
    source = artifacts.materialise(ws, model)
    made: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name in wanted:
        folder = tmp / name
        try:
            fields = forms.make(
                name, source, folder, max_seq_length=ws.settings.embed.max_seq_length
            )
        except InputError as exc:  # a model no form can be made of: served as it is
            log.warning("serving form %s of %s: %s", name, model.ref, exc)
            skipped[name] = str(exc)
            continue
        encoder = load_folder(folder, fields, **artifacts.encoder_options(ws, fields["kind"]))
        measured = evaluation.measure(encoder, ws.settings.embed.batch_size, baseline)
        rows[name] = measured.row(
            baseline, ws.settings.serving.max_ndcg_loss, bool(evaluation.datasets)
        )
        made[name] = (folder, fields)
    return rows, made


def pick(rows: dict[str, dict[str, Any]], *, torch_free: bool = False) -> str:
    """The form to serve, from the measured ``rows`` (``REFERENCE`` is the model itself): the
    fastest that passed and, unless ``torch_free`` (where the model cannot serve), is faster than
    the model; else ``REFERENCE``."""
    floor = 0.0 if torch_free else rows[REFERENCE]["docs_per_s"]
    fit = [n for n, r in rows.items() if n != REFERENCE and r["passed"] and r["docs_per_s"] > floor]
    return max(fit, key=lambda n: rows[n]["docs_per_s"], default=REFERENCE)


def _summary(rows: dict[str, dict[str, Any]]) -> str:
    measured = {n: r for n, r in rows.items() if n != REFERENCE}
    return (
        "; ".join(
            f"{n}: nDCG@10 loss {r['ndcg_loss'] or 'n/a (no gate dataset)'}, cosine mean "
            f"{'n/a (another vector size)' if r['cosine_mean'] is None else r['cosine_mean']}"
            for n, r in measured.items()
        )
        or "no form could be made"
    )


def _rule(ws: Workspace, evaluation: _Evaluation) -> str:
    loss = ws.settings.serving.max_ndcg_loss
    if evaluation.datasets:
        rule = f"fastest form with nDCG@10 >= model's × (1 - {loss}) on every gate dataset"
    else:
        rule = (
            f"no gate dataset: fastest form with cosine to the model's vectors mean >= "
            f"{COSINE_MEAN} and min >= {COSINE_MIN}"
        )
    if ws.settings.serving.torch_free:
        return f"torch-free forms only (serving.torch_free), even if slower than the model: {rule}"
    return f"{rule}, and faster than the model"


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


class _Measured:
    def __init__(self, docs_per_s: float, vectors: Vectors, ndcg: dict[str, float]) -> None:
        self.docs_per_s, self.vectors, self.ndcg = docs_per_s, vectors, ndcg

    def row(
        self,
        reference: _Measured | None = None,
        max_loss: float = 0.0,
        by_datasets: bool = True,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"docs_per_s": round(self.docs_per_s, 1), "ndcg@10": self.ndcg}
        if reference is None:
            return out
        # a static form has vectors of its own size (model2vec's PCA): no cosine to the model's
        same_space = self.vectors.shape == reference.vectors.shape
        cosine = np.einsum("ij,ij->i", self.vectors, reference.vectors) if same_space else None
        loss = {
            d: (reference.ndcg[d] - v) / reference.ndcg[d] if reference.ndcg[d] > 0 else 0.0
            for d, v in self.ndcg.items()
        }
        if by_datasets:
            passed = all(v <= max_loss for v in loss.values())
        else:
            passed = cosine is not None and (
                float(cosine.mean()) >= COSINE_MEAN and float(cosine.min()) >= COSINE_MIN
            )
        return {
            **out,
            "speedup": round(self.docs_per_s / reference.docs_per_s, 2),
            "cosine_mean": None if cosine is None else round(float(cosine.mean()), 5),
            "cosine_min": None if cosine is None else round(float(cosine.min()), 5),
            "ndcg_loss": {d: round(v, 5) for d, v in loss.items()},
            "passed": passed,
        }


class _Evaluation:
    """The texts every form is measured on, chosen once per release build."""

    def __init__(
        self,
        speed_texts: list[str],
        doc_ids: list[str],
        doc_texts: list[str],
        datasets: list[tuple[Dataset, list[int]]],
    ) -> None:
        self.speed_texts, self.doc_ids, self.doc_texts = speed_texts, doc_ids, doc_texts
        self.datasets = datasets  # each with the rows of doc_ids that are its corpus

    @classmethod
    def of(cls, ws: Workspace, held_out: dict[str, list[str]]) -> _Evaluation:
        settings = ws.settings.serving
        live = {d.id: d.full_text for d in ws.catalog.documents.iter_live()}
        rng = random.Random(0)  # the same evaluation data for every form, and every retry
        everyone = sorted(live)
        speed = [live[i] for i in rng.sample(everyone, min(settings.speed_documents, len(live)))]
        rows: dict[str, int] = {}
        datasets: list[tuple[Dataset, list[int]]] = []
        for dataset in gate.gate_datasets(ws, held_out):
            judged = sorted({d for rel in dataset.qrels.values() for d in rel if d in live})
            if not dataset.queries or not judged:
                continue
            judged_set = set(judged)
            others = [d for d in everyone if d not in judged_set]
            fill = max(0, settings.eval_documents - len(judged))
            corpus = judged + rng.sample(others, min(fill, len(others)))
            datasets.append((dataset, [rows.setdefault(d, len(rows)) for d in corpus]))
        if not datasets:  # fidelity on a sample of the corpus instead
            sample = rng.sample(everyone, min(settings.eval_documents, len(everyone)))
            for d in sample:
                rows.setdefault(d, len(rows))
        ids = sorted(rows, key=rows.__getitem__)
        return cls(speed, ids, [live[i] for i in ids], datasets)

    def describe(self) -> dict[str, Any]:
        return {
            "speed_documents": len(self.speed_texts),
            "documents": len(self.doc_ids),
            "datasets": {
                d.name: {"queries": len(d.queries), "documents": len(rows)}
                for d, rows in self.datasets
            },
        }

    def measure(
        self, encoder: Encoder, batch_size: int, reference: _Measured | None = None
    ) -> _Measured:
        best = float("inf")
        for _ in range(_TIMED_RUNS):
            started = time.perf_counter()
            encoder.encode(self.speed_texts, batch_size=batch_size)
            best = min(best, time.perf_counter() - started)
        vectors = encoder.encode(self.doc_texts, batch_size=batch_size)
        ndcg: dict[str, float] = {}
        for dataset, rows in self.datasets:
            qids = list(dataset.queries)
            queries = encoder.encode([dataset.queries[q] for q in qids], batch_size=batch_size)
            found = top_k(queries, vectors[rows], [self.doc_ids[r] for r in rows], 10)
            run = {q: dict(hits) for q, hits in zip(qids, found, strict=True)}
            ndcg[dataset.name] = round(metrics.mean(run, dataset.qrels)["ndcg@10"], 5)
        return _Measured(len(self.speed_texts) / best, vectors, ndcg)
