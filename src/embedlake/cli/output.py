"""Output helpers shared by the commands: rich tables for people, JSON for scripts.

A ``--json`` command prints exactly one JSON document on stdout: while it runs (:func:`json_mode`),
everything else that would reach stdout (a library's ``print``, a progress bar, a rich console,
output of C code to file descriptor 1) goes to stderr, and :func:`emit_json` writes to the real
stdout.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from rich import progress
from rich.console import Console

if TYPE_CHECKING:
    from embedlake.catalog.registry import ModelRecord
    from embedlake.embeddings.batch import EmbedReport
    from embedlake.encoders import Encoder
    from embedlake.workspace import Workspace

# markup off: what is printed holds user data (titles, ids, file names, reasons), and rich would
# read "[/x]" in it as a closing tag (a MarkupError) or drop "[bold]"; a line styled by us says
# markup=True and escapes (rich.markup.escape) what it quotes
console = Console(markup=False)
errors = Console(stderr=True, markup=False)


_documents: list[TextIO] = []  # where emit_json writes while a --json command runs


def emit_json(data: Any) -> None:
    out = _documents[-1] if _documents else sys.stdout
    out.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    out.flush()


def fileno(stream: TextIO) -> int | None:
    """The stream's file descriptor; None for one without (a test runner's in-memory stream)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None  # a test runner's in-memory stream


@contextmanager
def json_mode(enabled: bool = True) -> Iterator[None]:
    """Send stdout to stderr while the command runs, keeping the real stdout for the document;
    at the level of the file descriptor too where stdout has one (C code writes there)."""
    if not enabled:
        yield
        return
    stdout, stderr = sys.stdout, sys.stderr
    stdout.flush()
    out_fd, err_fd = fileno(stdout), fileno(stderr)
    saved = None
    if out_fd is not None and err_fd is not None:
        saved = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
        document: TextIO = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    else:
        document = stdout
    _documents.append(document)
    sys.stdout = stderr
    try:
        yield
    finally:
        sys.stdout = stdout
        _documents.pop()
        stderr.flush()
        if saved is not None and out_fd is not None:
            document.close()
            os.dup2(saved, out_fd)
            os.close(saved)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    to: Console | None = None,
) -> None:
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a cell is never read as markup (a title "Shock [/oops] tube" is data)
    t = Table(title=None if title is None else Text(title), show_lines=False)
    for c in columns:
        t.add_column(Text(c), overflow="fold")
    for row in rows:
        t.add_row(*[Text(_fmt(v)) for v in row])
    (to or console).print(t)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return "" if value is None else str(value)


def embed_with_progress(
    ws: Workspace,
    record: ModelRecord,
    *,
    quiet: bool = False,
    to: Console | None = None,
    encoder: Encoder | None = None,
) -> EmbedReport:
    """Batch inference with a progress bar (documents done of planned, time left) on ``to``
    (default: the console); ``encoder``: the model's, loaded already."""
    # here, not at the top: numpy, pyarrow and the model's libraries load only when embedding
    from embedlake.embeddings.batch import embed
    from embedlake.models import artifacts

    if encoder is None:
        encoder = artifacts.load_encoder(ws, record)
    columns = (
        progress.TextColumn(f"embedding with {record.ref}"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeRemainingColumn(),
    )
    # drawn on another console (the demo's), library output stays where cli.quiet sends it
    redirect = to is None
    with progress.Progress(
        *columns,
        console=to or console,
        disable=quiet,
        redirect_stdout=redirect,
        redirect_stderr=redirect,
    ) as bar:
        task = bar.add_task("embed", total=None)
        return embed(
            ws,
            record,
            encoder,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def measured_on(tuning: dict[str, Any]) -> str:
    """What an index's tuning measured recall on (a tuning made before spans: the sample)."""
    sets = tuning.get("sets") or {"documents": tuning["sample"]}
    names = {"documents": "held-back vectors", "spans": "query-like spans of them"}
    return " and ".join(f"{n} {names.get(name, name)}" for name, n in sets.items())
