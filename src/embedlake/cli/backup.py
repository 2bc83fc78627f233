"""Backup, restore and recovery: ``embedlake export``, ``import`` and ``recover``."""

from __future__ import annotations

from contextlib import closing
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
    from embedlake.errors import CatalogError
    from embedlake.workspace import Workspace

    settings = Settings.load(ws)  # a workspace it must be (init makes one where there is none)
    _set_aside_a_damaged_catalog(settings.catalog_url(), force)
    try:
        opened = Workspace.init(ws)  # a lost catalog gets its schema first
    except CatalogError as exc:  # damaged past its first pages: found by the migration
        if "malformed" not in str(exc) and "not a database" not in str(exc):
            raise
        _set_aside_a_damaged_catalog(settings.catalog_url(), force, damaged=True)
        opened = Workspace.init(ws)
    with opened as workspace:
        report = recovery.recover(workspace, force=force)
    if as_json:
        emit_json(asdict(report))
        return
    table("recovered", ["what", "count"], sorted(report.recovered.items()))
    for line in report.not_recovered:
        console.print(f"[yellow]not recovered[/] {escape(line)}", markup=True, highlight=False)


def _set_aside_a_damaged_catalog(url: str, force: bool, damaged: bool = False) -> None:
    """A SQLite catalog file that is no database (damaged, half written, overwritten) cannot be
    migrated or read: with ``--force`` it is renamed beside itself (kept, not deleted) so that a
    new one is rebuilt from the lake; without, the refusal says so."""
    import sqlite3
    from datetime import UTC, datetime
    from pathlib import Path

    from embedlake.errors import ConfigError

    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return
    path = Path(url[len(prefix) :])
    if not path.is_file() or path.stat().st_size == 0:
        return
    if not damaged:  # its header and schema, read cheaply (a full check would read it all)
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return
        except sqlite3.DatabaseError:
            pass
    if not force:
        raise ConfigError(
            f"the catalog {path} is damaged (not a readable SQLite database): `embedlake recover "
            "--force` sets it aside and rebuilds the catalog from the lake"
        )
    aside = path.with_name(f"{path.name}.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    console.print(f"the damaged catalog was set aside as {aside}", highlight=False)
