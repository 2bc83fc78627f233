"""Backup, restore and recovery: ``embedlake export``, ``import`` and ``recover``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape

from embedlake.cli.commands import Json, Ws
from embedlake.cli.output import console, emit_json, table

Location = Annotated[
    str, typer.Argument(help="A folder or fsspec URL (s3://bucket/prefix) for the snapshot.")
]


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
    app.command("recover")(recover)


def export(
    ws: Ws,
    dest: Location,
    lake: Annotated[
        bool, typer.Option(help="Copy the lake's objects too (--no-lake: only their manifest).")
    ] = True,
    as_json: Json = False,
) -> None:
    """Snapshot a workspace: its catalog (engine-neutral) and its lake, or the lake's manifest."""
    from embedlake import backup
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as workspace:
        snap = backup.export(workspace, dest, lake=lake)
    if as_json:
        emit_json(asdict(snap))
        return
    console.print(
        f"exported {sum(snap.tables.values())} catalog rows and {snap.objects} lake objects "
        f"({snap.lake_bytes / 1e6:.1f} MB{'' if snap.lake_copied else ', manifest only'}) "
        f"to {snap.location}"
    )


def import_(ws: Ws, source: Location, as_json: Json = False) -> None:
    """Restore a snapshot into a new workspace (`embedlake init` first; its catalog must be empty).
    Any catalog engine: a snapshot of a SQLite workspace imports into PostgreSQL."""
    from embedlake import backup
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as workspace:
        snap = backup.import_(workspace, source)
    if as_json:
        emit_json(asdict(snap))
        return
    console.print(
        f"imported {sum(snap.tables.values())} catalog rows and {snap.objects} lake objects "
        f"from {snap.location}"
    )


def recover(
    ws: Ws,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace what the catalog holds (API keys are kept) with what the lake holds."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """Rebuild a lost or damaged catalog from the lake: documents, models, embedding runs,
    indexes, datasets, releases and alias history. Says what could not be recovered (API keys
    must be made again). Refused over a catalog that is not empty, unless --force."""
    from embedlake import recover as recovery
    from embedlake.config import Settings
    from embedlake.workspace import Workspace

    Settings.load(ws)  # a workspace it must be (init makes one where there is none)
    with Workspace.init(ws) as workspace:  # a lost catalog gets its schema first
        report = recovery.recover(workspace, force=force)
    if as_json:
        emit_json(asdict(report))
        return
    table("recovered", ["what", "count"], sorted(report.recovered.items()))
    for line in report.not_recovered:
        console.print(f"[yellow]not recovered[/] {escape(line)}", markup=True, highlight=False)
