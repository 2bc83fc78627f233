"""Build a release: serving form → embed (fan-out) → reducer → map → index → catch up →
benchmark → gate → publish (which embeds and indexes what arrived while it was benchmarked, so an
alias never moves to a release behind the catalog: ``releases.coverage``).

Every stage is a checkpointed step of the caller's context, so under the functions runtime a crash
resumes at the stage that failed (and the embedding at the shard that failed); nothing is published
before the gate has passed. Called directly (CLI, tests), the same code runs the stages in order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from embedlake import steps
from embedlake.catalog.releases import ReleaseRecord
from embedlake.embeddings.batch import chunking_for, embed_in_steps
from embedlake.errors import NotFound
from embedlake.releases import coverage, form_choice, gate, hybrid, reduce
from embedlake.releases.publish import publish
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


class Steps(steps.Steps, Protocol):
    """The steps of the handler's context, which also names the request (the release's id
    derives from it, so a retried build continues the same release)."""

    request_id: str


def release_id_for(model_name: str, request_id: str) -> str:
    """Derived from the request, so a retried or recovered build continues the same release."""
    return f"{model_name}-{hashlib.sha256(request_id.encode()).hexdigest()[:10]}"


def build(ctx: Steps, ws: Workspace, model_ref: str, *, reason: str, publish: bool = True) -> str:
    # the model is served in its fastest form that keeps its quality: the release is built with
    # that form (corpus and queries alike); a heavy stage, on the engine like the shards
    started = time.perf_counter()
    [chosen] = ctx.map("serving form", _serving_form, [model_ref])
    model_ref = chosen["model"]
    release_id = ctx.step("create", _create, ws, model_ref, ctx.request_id, reason)
    ctx.step("form report", _form_report, ws, release_id, chosen["report"])
    # how documents become passages: fixed here, for every stage and every later update
    chunker = ctx.step("chunking", _chunking, ws, release_id)
    stages: dict[str, float] = {"serving_form": time.perf_counter() - started}
    stages["embed"] = _embed_all(ctx, ws, model_ref, "embed", chunker)
    # the heavy stages run on the compute engine (a Ray actor in production), like the shards
    stages["reducer"] = _heavy(ctx, "reducer", reduce.reduce_release, release_id)
    stages["map"] = _heavy(ctx, "map", reduce.map_release, release_id)
    stages["index"] = _heavy(ctx, "index", coverage.index_release, release_id)
    late = _embed_all(ctx, ws, model_ref, "catch-up", chunker)
    if ctx.step("late documents", coverage.lacking, ws, release_id):
        stages["catch_up"] = late + _heavy(ctx, "re-index", coverage.update_release, release_id)
    # BM25 over the release's passages and its fitted hybrid fusion, before it is judged
    stages["hybrid"] = _heavy(ctx, "hybrid", hybrid.prepare, release_id)
    stages["benchmark"] = ctx.step("benchmark and gate", _benchmark, ws, release_id, stages)
    if publish:
        ctx.step("conclude", _conclude, ws, release_id)
    return str(release_id)


def _heavy(ctx: Steps, name: str, fn: Callable[[Workspace, str], float], release_id: str) -> float:
    """One stage as a fan-out of one: checkpointed like a step, run where the engine runs tasks."""
    [seconds] = ctx.map(name, fn, [release_id])
    return float(seconds)


def _serving_form(ws: Workspace, model_ref: str) -> dict[str, Any]:
    return form_choice.choose(
        ws, model_ref, gate.held_out(ws, ws.catalog.registry.model(model_ref).id)
    )


def _form_report(ws: Workspace, release_id: str, report: dict[str, Any]) -> None:
    ws.catalog.releases.merge_report(release_id, serving_form=report)


def _chunking(ws: Workspace, release_id: str) -> str:
    """The release's chunking, from the settings and its model's window, into its report."""
    release = ws.catalog.releases.get(release_id)
    if "chunking" not in release.report:
        model = ws.catalog.registry.model_by_id(release.model_id)
        ws.catalog.releases.merge_report(release_id, chunking=chunking_for(ws, model).describe())
    return ws.catalog.releases.get(release_id).chunker


def _create(ws: Workspace, model_ref: str, request_id: str, reason: str) -> str:
    model = ws.catalog.registry.model(model_ref)
    release_id = release_id_for(model.name, request_id)
    try:
        ws.catalog.releases.get(release_id)
    except NotFound:
        ws.catalog.releases.create(release_id, model.id, reason)
    return release_id


def _embed_all(ctx: Steps, ws: Workspace, model_ref: str, label: str, chunker: str) -> float:
    started = time.perf_counter()
    embed_in_steps(ctx, ws, model_ref, f"{label} {model_ref}", chunker)
    return time.perf_counter() - started


def _benchmark(ws: Workspace, release_id: str, stages: dict[str, float]) -> float:
    started = time.perf_counter()
    releases = ws.catalog.releases
    release = releases.get(release_id)
    alias = ws.settings.gate.alias
    production_id = releases.alias(alias)
    production: ReleaseRecord | None = None
    if production_id is not None and production_id != release_id:
        production = releases.get(production_id)
    judged = gate.judge(ws, release, production)
    ours, theirs, decision = judged.candidate, judged.production, judged.decision
    changes = {
        (r["dataset"], r.get("mode", "dense")): r["change"]
        for r in decision["rules"]
        if r["rule"] == gate.NO_REGRESSION
    }
    dense = [r for r in ours if r.mode == "dense"]
    seconds = time.perf_counter() - started
    model = ws.catalog.registry.model_by_id(release.model_id)
    report = ws.catalog.releases.merge_report(
        release_id,
        model=model.ref,
        against=production_id if production else None,
        alias=alias,
        gate=decision,
        # what its documents became: passages, and any document longer than the chunking keeps
        passages=ws.catalog.registry.cut(model.id, release.chunker, live=True).describe(),
        stages={**stages, "benchmark": seconds},
        datasets={
            r.dataset: {
                "queries": len(r.per_query.get("ndcg@10", {})),
                "release": r.metrics,
                "production": next(
                    (p.metrics for p in theirs or [] if p.dataset == r.dataset), None
                ),
                # the paired change against production on these same queries (None: first)
                "change": changes.get((r.dataset, "dense")),
                # BM25 alone and hybrid (the release's fusion) on the same queries
                "modes": {
                    m.mode: {
                        "ndcg@10": m.metrics["ndcg@10"],
                        "production": next(
                            (
                                p.metrics["ndcg@10"]
                                for p in theirs or []
                                if (p.dataset, p.mode) == (m.dataset, m.mode)
                            ),
                            None,
                        ),
                        "change": changes.get((m.dataset, m.mode)),
                    }
                    for m in ours
                    if m.dataset == r.dataset and m.mode != "dense"
                },
            }
            for r in dense
        },
    )
    releases.update(release_id, status="built")
    ws.lake.put(f"{release.prefix}/report.json", json.dumps(report, indent=2).encode())
    _model_card(ws, model.prefix, model.ref, release_id, report)
    if "form_of" in model.manifest:  # the card of the model the form was made of, too
        source = ws.catalog.registry.model(model.manifest["form_of"])
        _model_card(ws, source.prefix, source.ref, release_id, report)
    return seconds


def _model_card(
    ws: Workspace, prefix: str, ref: str, release_id: str, report: dict[str, Any]
) -> None:
    """The model's card (card.md beside its manifest; neither counts in the content hash)."""
    lines = [
        f"# {ref}",
        "",
        f"Benchmarked in release `{release_id}` against "
        f"`{report.get('against') or 'nothing (first release)'}`.",
        "",
        "| dataset | queries | nDCG@10 | recall@100 | MRR@10 | ANN recall@10 | production nDCG@10 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report.get("datasets", {}).items():
        m, p = row["release"], row["production"] or {}
        lines.append(
            f"| {name} | {row['queries']} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} "
            f"| {m['mrr@10']:.4f} | {m['ann_recall@10']:.4f} | "
            f"{p.get('ndcg@10', float('nan')):.4f} |"
        )
    verdict = "passed" if report.get("gate", {}).get("passed") else "failed"
    lines += ["", f"Gate: {verdict}."]
    ws.lake.put(f"{prefix}/card.md", "\n".join(lines).encode())


def _conclude(ws: Workspace, release_id: str) -> str:
    release = ws.catalog.releases.get(release_id)
    if release.report.get("gate", {}).get("passed"):
        # documents that arrived while it was benchmarked are embedded before the alias moves
        publish(
            ws,
            release_id,
            ws.settings.gate.alias,
            actor="runtime",
            reason=release.reason,
            regate=False,
            catch_up="all",
        )
        return "published"
    ws.catalog.releases.update(release_id, status="rejected")
    log.warning("release %s rejected by the gate", release_id)
    return "rejected"
