"""Release commands: train, releases, compare, publish, rollback, catch-up, retain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import uuid4

import typer

from embedlake.cli.output import console, emit_json, measured_on, table
from embedlake.cli.progress import StageSteps

if TYPE_CHECKING:
    from embedlake.workspace import Workspace

Ws = Annotated[Path, typer.Argument(help="Workspace folder (made by `embedlake init`).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Alias = Annotated[str, typer.Option(help="The alias to move.")]


def register(app: typer.Typer) -> None:
    for command in (train, release, releases, compare, publish, rollback, retain):
        app.command()(command)
    app.command("map")(map_)
    app.command("catch-up")(catch_up)


def train(
    ws: Ws,
    name: Annotated[str, typer.Option(help="Name of the new model.")],
    kind: Annotated[
        str, typer.Option(help="sentence-transformers (fine-tune) or lsa.")
    ] = "sentence-transformers",
    base: Annotated[
        str, typer.Option(help="Model to fine-tune: minilm, name[@version] or a folder.")
    ] = "minilm",
    pairs: Annotated[
        str | None,
        typer.Option(
            help="qrels:PATH (a BEIR folder: its train.tsv and dev.tsv, or a seeded split of "
            "test.tsv), self:title or self:span (no labels)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, the order and the weights.")] = 0,
    epochs: Annotated[
        int | None, typer.Option(help="Fine-tuning epochs (default: [training] epochs).")
    ] = None,
    components: Annotated[
        int | None, typer.Option(help="LSA: SVD components (default from settings).")
    ] = None,
    now: Annotated[
        bool,
        typer.Option(
            help="Also register it and build its release here, "
            "instead of leaving that to `embedlake up`."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Train a model and write it into the lake; its arrival starts a release build."""
    from embedlake.training.train import train as train_model
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        prefix, manifest = train_model(
            w,
            name=name,
            kind=kind,
            base=base,
            pairs=pairs,
            seed=seed,
            epochs=epochs,
            components=components,
        )
        out: dict[str, Any] = {
            "model": f"{manifest['name']}@{manifest['version']}",
            "prefix": prefix,
        }
        if now:
            out.update(register_and_build(w, prefix))
    if as_json:
        emit_json(out)
        return
    console.print(f"model {out['model']} written to {prefix}/", highlight=False)
    if now:
        console.print(f"release {out['release']}: {out['status']}", highlight=False)
    else:
        console.print("`embedlake up` registers it and builds its release", highlight=False)


def register_and_build(w: Workspace, prefix: str) -> dict[str, Any]:
    """Register a model folder the lake holds and build its release now (``train --now``)."""
    from embedlake.models import artifacts

    record, _ = artifacts.register_from_lake(w, prefix)
    return build_now(w, record.ref, f"model {record.ref} trained (--now)", publish=True)


def build_now(
    w: Workspace,
    ref: str,
    reason: str,
    *,
    publish: bool,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build a release of a registered model in this process, without the runtime: what
    ``release``, ``train --now`` and ``demo`` do. Returns the release id and its status;
    ``on_stage`` hears the name of each stage as it starts (a progress display)."""
    from embedlake.functions.context import Context
    from embedlake.releases.build import build
    from embedlake.steps import DirectSteps

    steps = StageSteps(DirectSteps(w), on_stage) if on_stage is not None else None
    ctx = Context(ws=w, function_name="build-release", request_id=uuid4().hex, steps=steps)
    started = datetime.now(UTC)
    try:
        release_id = build(ctx, w, ref, reason=reason, publish=publish)
    except BaseException as exc:  # (Ctrl-C too) no durable workflow will resume this build
        _stopped(w, reason, started, exc)
        raise
    return {"release": release_id, "status": w.catalog.releases.get(release_id).status}


def _stopped(w: Workspace, reason: str, started: datetime, exc: BaseException) -> None:
    """The release a build in this process began, marked failed when the build stops: it was
    left ``building`` for good (publish refuses it, retain keeps it). A build killed outright
    (SIGKILL) cannot say so; ``embedlake releases`` shows it building."""
    why = f"the build stopped: {type(exc).__name__}: {exc}"[:500]
    for r in w.catalog.releases.all():
        created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        if r.status == "building" and r.reason == reason and created >= started:
            w.catalog.releases.update(r.id, status="failed", reason=f"{reason}; {why}")


def release(
    ws: Ws,
    model: Annotated[
        str, typer.Option("--model", "-m", help="minilm, lsa, name[@version] or a model folder.")
    ] = "minilm",
    publish: Annotated[bool, typer.Option(help="Publish if it passes the gate.")] = True,
    as_json: Json = False,
) -> None:
    """Build a release of a model here and now: embed, index, reducer, benchmark, gate."""
    from embedlake.models.resolve import resolve_model
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        record = resolve_model(w, model)
        out = build_now(w, record.ref, f"built by hand from {model}", publish=publish)
        report = w.catalog.releases.get(out["release"]).report
    if as_json:
        emit_json({**out, "report": report})
        return
    console.print(f"release {out['release']} of {record.ref}: {out['status']}", highlight=False)
    from embedlake.releases.gate import describe

    for rule in report.get("gate", {}).get("rules", []):
        console.print(f"  {describe(rule)}", highlight=False)
    tuned = (report.get("index") or {}).get("tuning")
    if tuned:
        reached = "reaches" if tuned["reached"] else "falls short of the target at"
        console.print(
            f"  index: {tuned['knob']} {tuned['value']} {reached} recall@10 "
            f"{tuned['recall']:.3f} (target {tuned['target']:.2f}, on {measured_on(tuned)})",
            highlight=False,
        )


def releases(ws: Ws, as_json: Json = False) -> None:
    """Releases: id, model, status, aliases, documents, gate, and per dataset nDCG@10 on the
    gate's queries with the paired change against the release it was gated against."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        aliases: dict[str, list[str]] = {}
        for name, rid in w.catalog.releases.aliases().items():
            aliases.setdefault(rid, []).append(name)
        rows: list[dict[str, Any]] = []
        for r in w.catalog.releases.all():
            gate = r.report.get("gate", {})
            rows.append(
                {
                    "release": r.id,
                    "model": w.catalog.registry.model_by_id(r.model_id).ref,
                    "status": r.status,
                    "aliases": aliases.get(r.id, []),
                    "documents": r.snapshot.get("documents"),
                    "gate": None if not gate else ("passed" if gate.get("passed") else "failed"),
                    # each release measured on its own gate's queries: the count says which,
                    # and the change is paired, against what it was gated against
                    "against": r.report.get("against"),
                    "ndcg@10": {
                        d: {
                            "value": round(v["release"]["ndcg@10"], 4),
                            "queries": v.get("queries"),
                            "change": v.get("change"),
                        }
                        for d, v in r.report.get("datasets", {}).items()
                    },
                    "created_at": r.created_at,
                }
            )
    if as_json:
        emit_json(rows)
    else:
        table(
            "releases",
            ["release", "model", "status", "aliases", "documents", "gate", "nDCG@10", "against"],
            [
                (
                    r["release"],
                    r["model"],
                    r["status"],
                    ", ".join(r["aliases"]),
                    r["documents"],
                    r["gate"],
                    "; ".join(_ndcg(d, v) for d, v in r["ndcg@10"].items()),
                    r["against"] or "",
                )
                for r in rows
            ],
        )


def _ndcg(dataset: str, v: dict[str, Any]) -> str:
    """``med 0.6512 (15 q), +0.0120 [−0.0100 … +0.0300] vs against``: the value alone cannot be
    compared across releases gated on different queries; the paired change can."""
    text = f"{dataset} {v['value']:.4f} ({v['queries']} q)"
    c = v.get("change")
    if c:
        text += f", {c['delta']:+.4f} [{c['low']:+.4f} … {c['high']:+.4f}]"
    return text


def compare(
    ws: Ws,
    a: Annotated[str, typer.Argument(help="A release.")],
    b: Annotated[str, typer.Argument(help="Another release.")],
    as_json: Json = False,
) -> None:
    """Two releases on the same queries: metrics, the change of nDCG@10 with its confidence
    interval and p-value, overlap@10, and what the gate's policy decides for B replacing A."""
    from embedlake.releases.compare import compare as compare_releases
    from embedlake.releases.gate import describe
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        out = compare_releases(w, a, b)
    if as_json:
        emit_json(out)
        return
    for row in out["datasets"]:
        metrics = ["ndcg@10", "recall@100", "mrr@10", "ann_recall@10", "qps"]
        table(
            f"{row['dataset']} ({row['queries']} queries)",
            ["metric", a, b],
            [(m, row[a][m], row[b][m]) for m in metrics],
        )
        c = row["ndcg@10_change"]
        console.print(
            f"  nDCG@10 {b} − {a}: {_change(c)}; wins {c['wins']}, losses {c['losses']}, ties "
            f"{c['ties']}; overlap@10 {row['overlap@10']:.3f}",
            highlight=False,
        )
    for m in out["modes"]:
        console.print(
            f"{m['dataset']} ({m['mode']}): nDCG@10 {m[a]:.4f} → {m[b]:.4f}, "
            f"{_change(m['ndcg@10_change'])}",
            highlight=False,
        )
    if out["all"] is not None:
        console.print(f"all datasets (each counted once): {_change(out['all'])}", highlight=False)
    gate = out["gate"]
    console.print(
        f"gate ({gate.get('policy', 'no_regression')}), {b} replacing {a}: "
        + ("passes" if gate["passed"] else "fails"),
        highlight=False,
    )
    for rule in gate["rules"]:
        console.print(f"  {describe(rule)}", highlight=False)


def _change(c: dict[str, Any]) -> str:
    level = round(100 * c["confidence"])
    return (
        f"{c['delta']:+.4f} ({level}% CI {c['low']:+.4f} … {c['high']:+.4f}, "
        f"p {c['p_value']:.3g}, {c['queries']} queries)"
    )


def publish(
    ws: Ws,
    release: Annotated[str, typer.Argument(help="Release to publish.")],
    alias: Alias = "production",
    force: Annotated[bool, typer.Option(help="Skip the gate.")] = False,
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "",
) -> None:
    """Move an alias to a release, through the same gate as the runtime unless forced."""
    from embedlake.releases.publish import actor
    from embedlake.releases.publish import publish as publish_release
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        move = publish_release(w, release, alias, force=force, actor=actor(), reason=reason)
    console.print(
        f"{alias}: {move.from_release} → {move.to_release} ({move.reason})", highlight=False
    )


def rollback(
    ws: Ws,
    alias: Alias = "production",
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "",
) -> None:
    """Move an alias one step back: the previous release's encoder, index and reducer."""
    from embedlake.releases.publish import actor
    from embedlake.releases.publish import rollback as rollback_alias
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        move = rollback_alias(w, alias, actor=actor(), reason=reason)
    console.print(
        f"{alias}: {move.from_release} → {move.to_release} ({move.reason})", highlight=False
    )


def catch_up(
    ws: Ws,
    release: Annotated[str, typer.Argument(help="Release to bring up to date.")],
    as_json: Json = False,
) -> None:
    """Embed and index the documents a release lacks (those that arrived after it was built),
    with its own model and chunking: what publish and rollback need of a release far behind."""
    from embedlake.functions.context import direct_context
    from embedlake.releases import coverage
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        done = coverage.catch_up(direct_context(w, "catch-up", uuid4().hex), w, release)
    if as_json:
        emit_json({"release": release, "caught_up": done})
    else:
        console.print(f"release {release}: caught up {done} documents", highlight=False)


def retain(ws: Ws) -> None:
    """Remove the files of releases no alias needs (see releases.keep_moves)."""
    from embedlake.releases.publish import retain as retain_releases
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        removed = retain_releases(w)
    console.print(f"removed {len(removed)} releases: {', '.join(removed) or '-'}", highlight=False)


def map_(
    ws: Ws,
    release: Annotated[
        str | None, typer.Option(help="Release id (default: the one behind the gate's alias).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Fit the 2D map of a release again (every release build fits one; the `map` settings)."""
    from embedlake.errors import NotFound
    from embedlake.releases.reduce import map_release
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        release_id = release or w.catalog.releases.alias(w.settings.gate.alias)
        if release_id is None:
            raise NotFound(f"alias {w.settings.gate.alias!r} points to no release: name one")
        map_release(w, release_id)
        meta = w.catalog.releases.get(release_id).report["map"]
    if as_json:
        emit_json({"release": release_id, **meta})
    else:
        console.print(
            f"{release_id}: {meta['method']} map of {meta['n']:,} documents "
            f"({meta['placed']:,} placed) in {meta['seconds']:.1f}s",
            highlight=False,
        )
