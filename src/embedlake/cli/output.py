"""Output helpers shared by the commands: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.batch import EmbedReport, embed
from embedlake.models import artifacts
from embedlake.workspace import Workspace

console = Console()
errors = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*[_fmt(v) for v in row])
    console.print(t)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return "" if value is None else str(value)


def embed_with_progress(ws: Workspace, record: ModelRecord, *, quiet: bool = False) -> EmbedReport:
    """Batch inference with a progress bar (documents done of planned, time left)."""
    encoder = artifacts.load_encoder(ws, record)
    columns = (
        TextColumn(f"embedding with {record.ref}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet) as bar:
        task = bar.add_task("embed", total=None)
        return embed(
            ws,
            record,
            encoder,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
