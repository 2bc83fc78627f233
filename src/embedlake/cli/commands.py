"""The pipeline commands: init, ingest, embed, index, search, bench, sql and friends.

Each command imports what it works with in its own body: `embedlake --help` and `embedlake status`
must start at once, without the numerical and model libraries the other commands load.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from embedlake.cli.output import console, embed_with_progress, emit_json, measured_on, table
from embedlake.errors import InputError

if TYPE_CHECKING:
    from embedlake.catalog.registry import ModelRecord
    from embedlake.config import Settings
    from embedlake.ingest.datasets import Dataset
    from embedlake.workspace import Workspace

Ws = Annotated[Path, typer.Argument(help="Workspace folder (made by `embedlake init`).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="minilm, lsa, name[@version], or a model folder.")
]


def register(app: typer.Typer) -> None:
    for command in (
        init,
        migrate,
        ingest,
        delete,
        embed,
        index,
        search,
        bench,
        sql,
        models,
        status,
    ):
        app.command()(command)


def init(path: Annotated[Path, typer.Argument(help="Folder to create or reuse.")]) -> None:
    """Create a workspace: embedlake.toml, the lake folder and a migrated catalog."""
    from embedlake.workspace import Workspace

    with Workspace.init(path) as ws:
        console.print(f"workspace ready: {ws.settings.workspace} (lake: {ws.lake.url})")


def migrate(
    ws: Ws,
    force: Annotated[
        bool,
        typer.Option(
            help="Start an empty catalog even though the lake holds data (see `embedlake recover`)."
        ),
    ] = False,
) -> None:
    """Create or upgrade the catalog schema (idempotent). A lost catalog over a lake that holds
    data is refused: `embedlake recover` rebuilds it from the lake."""
    from embedlake.workspace import Workspace

    with Workspace.init(ws, guard=not force):
        console.print("catalog schema is current")


def ingest(
    ws: Ws,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files or folders: BEIR folder, .jsonl, .csv, .parquet, .txt, .md."),
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name (default: file or folder name).")
    ] = None,
    id_prefix: Annotated[
        str,
        typer.Option(
            help="Prefix for every document id, to keep two collections with the same ids apart."
        ),
    ] = "",
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 when any record is rejected.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Ingest documents: copy to raw/, validate, upsert, quarantine rejects."""
    from embedlake.ingest import ingest_path
    from embedlake.ingest.pipeline import IngestReport, announce
    from embedlake.workspace import Workspace

    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before any is ingested
        raise InputError(f"no such file or folder: {', '.join(missing)}")
    with Workspace.open(ws) as w:
        reports: list[IngestReport] = []
        try:
            for p in paths:
                reports.extend(ingest_path(w, p, source=source, id_prefix=id_prefix))
        finally:  # what was committed is announced, even when a later path fails
            announce(w, reports)  # the runtime embeds and indexes them, now or when it starts
    rejected = sum(r.rejected for r in reports)
    if as_json:
        emit_json(
            [
                {
                    **{k: v for k, v in asdict(r).items() if k != "reasons"},
                    "reasons": [str(e) for e in r.reasons],
                }
                for r in reports
            ]
        )
    else:
        table(
            "ingest",
            ["file", "source", "read", "inserted", "updated", "unchanged", "rejected"],
            [
                (r.file, r.source, r.read, r.inserted, r.updated, r.unchanged, r.rejected)
                for r in reports
            ],
        )
        for r in reports:
            for reason in r.reasons[:10]:
                console.print(
                    f"[yellow]rejected[/] {escape(str(reason))}", markup=True, highlight=False
                )
            if r.quarantine_key:
                console.print(f"  rejects kept in {r.quarantine_key}", highlight=False)
    if rejected and strict:
        raise typer.Exit(1)


def delete(ws: Ws, doc_id: Annotated[str, typer.Argument(help="Document id.")]) -> None:
    """Delete a document (a tombstone: it leaves every result list, the audit trail stays)."""
    from embedlake.ingest import delete_document
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        delete_document(w, doc_id)
    console.print(f"deleted {doc_id}", highlight=False)


def embed(
    ws: Ws,
    model: ModelOpt = "minilm",
    refit: Annotated[
        bool, typer.Option(help="For lsa: fit a new version on the current corpus.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Embed every document the model has not embedded yet (resumes an interrupted run)."""
    from embedlake.models.resolve import resolve_model
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        record = resolve_model(w, model, refit=refit)
        report = embed_with_progress(w, record, quiet=as_json)
    if as_json:
        emit_json({**asdict(report), "rate": report.rate})
    elif report.planned == 0:
        console.print(f"{record.ref}: every document is embedded already", highlight=False)
    else:
        console.print(
            f"{record.ref}: embedded {report.embedded:,} documents in "
            f"{report.seconds:.1f} s ({report.rate:,.1f} docs/s)"
            + (" [resumed]" if report.resumed else ""),
            highlight=False,
            markup=False,
        )


def index(
    ws: Ws,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help=("Model whose vectors to index (default: the newest model).")
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="auto, hnsw, rabitq, exact or pgvector (default: from settings)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Build an ANN index over a model's vectors and store it in the lake."""
    from embedlake.search.build import build_index
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        record = w.catalog.registry.model(model) if model else _newest_model(w)
        report = build_index(w, record, engine)
    if as_json:
        emit_json(asdict(report))
    else:
        console.print(
            f"index {report.index_id}: {report.engine} over {report.n_vectors:,} "
            f"vectors of {report.model} in {report.seconds:.1f} s",
            highlight=False,
        )
        if report.tuning:
            t = report.tuning
            console.print(
                f"{t['knob']} {t['value']}: recall@10 {t['recall']:.3f} against exact search "
                f"(target {t['target']:.2f}{'' if t['reached'] else ', not reached'}, "
                f"{measured_on(t)})",
                highlight=False,
            )
        if report.missing:
            console.print(
                f"[yellow]{report.missing} documents are not embedded yet: run "
                f"`embedlake embed` first[/]",
                markup=True,
            )


def _newest_model(w: Workspace) -> ModelRecord:
    found = w.catalog.registry.list_models()
    if not found:
        raise InputError("no model is registered yet: run `embedlake embed` first")
    return found[-1]


def search(
    ws: Ws,
    query: Annotated[str, typer.Argument(help="Query text.")],
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help=("Search this model's newest index (default: the newest index).")
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Nearest documents to a query, embedded by the index's own model."""
    from embedlake.search.limits import check_search
    from embedlake.search.searcher import Searcher
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        check_search(w.settings.api, k=k, query=query)  # the API's limits, before any work
        searcher = Searcher(w, model)
        hits = searcher.search(query, k)
    if as_json:
        emit_json(
            {
                "model": searcher.model.ref,
                "index": searcher.record.id,
                "hits": [asdict(h) for h in hits],
            }
        )
    else:
        # a long document's hit shows the passage that matched, and where it lies
        table(
            f"{query!r} ({searcher.model.ref})",
            ["#", "score", "id", "title", "passage", "snippet"],
            [
                (
                    n,
                    h.score,
                    h.id,
                    h.title,
                    f"{h.passage.start}-{h.passage.end}" if h.passage else "all",
                    h.snippet,
                )
                for n, h in enumerate(hits, 1)
            ],
        )


def bench(
    ws: Ws,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help=("A BEIR folder or a registered dataset name (default: every registered one).")
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help=("Models to benchmark (default: every model with an index).")
        ),
    ] = None,
    bm25: Annotated[bool, typer.Option(help="Include the BM25 baselines.")] = True,
    id_prefix: Annotated[
        str, typer.Option(help="Id prefix used when the dataset's corpus was ingested.")
    ] = "",
    as_json: Json = False,
) -> None:
    """nDCG@10, recall@100, MRR@10, MAP, ANN recall@10 and QPS, with BM25 beside each model."""
    from embedlake.evaluate import bench as benchmark
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        sets = _datasets(w, dataset or [], id_prefix)
        refs = model or _indexed_models(w)
        results = []
        for ds in sets:
            if bm25:
                results += [benchmark.bench_bm25(w, ds), benchmark.bench_bm25(w, ds, stem=True)]
            results += [benchmark.bench_model(w, ds, ref) for ref in refs]
    columns = ["ndcg@10", "recall@100", "mrr@10", "map", "ann_recall@10", "qps"]
    if as_json:
        emit_json([{"dataset": r.dataset, "system": r.system, **r.metrics} for r in results])
    else:
        table(
            "benchmark",
            ["dataset", "system", *columns],
            [(r.dataset, r.system, *[r.metrics.get(c) for c in columns]) for r in results],
        )


def _datasets(w: Workspace, names: list[str], id_prefix: str) -> list[Dataset]:
    from embedlake.ingest.datasets import load_folder, load_registered

    if not names:
        names = [d.name for d in w.catalog.benchmarks.list_datasets()]
        if not names:
            raise InputError(
                "no benchmark dataset registered: ingest a BEIR folder or pass --dataset PATH"
            )
    out = []
    for name in names:
        path = Path(name)
        out.append(
            load_folder(path, id_prefix=id_prefix) if path.is_dir() else load_registered(w, name)
        )
    return out


def _indexed_models(w: Workspace) -> list[str]:
    from embedlake.releases.serving import indexed_models

    refs = [m.ref for m in indexed_models(w)]
    if not refs:
        raise InputError("no index built yet: run `embedlake index` first")
    return refs


def sql(
    ws: Ws,
    query: Annotated[
        str, typer.Argument(help="SQL over the views documents, document_log, vectors.")
    ],
    as_json: Json = False,
) -> None:
    """Query the lake's Parquet with DuckDB."""

    from embedlake import warehouse
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        columns, rows = warehouse.query(w, query)
    if as_json:
        emit_json([dict(zip(columns, r, strict=True)) for r in rows])
    else:
        table(None, columns, rows)


def models(ws: Ws, as_json: Json = False) -> None:
    """Registered models with their kind, dimension, hash and coverage."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        rows = [
            (m.ref, m.kind, m.dim, m.content_hash[:12], w.catalog.registry.count_embedded(m.id))
            for m in w.catalog.registry.list_models()
        ]
    if as_json:
        emit_json(
            [dict(zip(["model", "kind", "dim", "hash", "embedded"], r, strict=True)) for r in rows]
        )
    else:
        table("models", ["model", "kind", "dim", "hash", "embedded"], rows)


def _status_opened(settings: Settings) -> dict[str, object]:
    """What `status` shows, from the opened workspace (any catalog)."""
    from embedlake.workspace import Workspace

    with Workspace.from_settings(settings) as w:
        reg = w.catalog.registry
        return {
            "workspace": str(w.settings.workspace),
            "lake": w.lake.url,
            "documents": w.catalog.documents.count(),
            "models": [
                {
                    "model": m.ref,
                    "embedded": reg.count_embedded(m.id),
                    "cut": reg.count_embedded(m.id, cut=True),
                }
                for m in reg.list_models()
            ],
            "datasets": [d.name for d in w.catalog.benchmarks.list_datasets()],
        }


def _status_peeked(settings: Settings) -> dict[str, object] | None:
    """The same from a SQLite catalog read without SQLAlchemy (catalog/peek.py), or None."""
    from embedlake.catalog.peek import sqlite_counts

    url, prefix = settings.catalog_url(), "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    counts = sqlite_counts(Path(url[len(prefix) :]))
    if counts is None:
        return None
    return {
        "workspace": str(settings.workspace),
        "lake": settings.resolve(settings.lake.url),
        "documents": counts.documents,
        "models": [{"model": ref, "embedded": n, "cut": cut} for ref, n, cut in counts.models],
        "datasets": counts.datasets,
    }


def status(ws: Ws, as_json: Json = False) -> None:
    """Documents, models, coverage, indexes and datasets of a workspace."""
    from embedlake.config import Settings

    settings = Settings.load(ws)
    data = _status_peeked(settings) or _status_opened(settings)
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            console.print(f"{key}: {value}", highlight=False)
