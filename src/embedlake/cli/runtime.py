"""Runtime commands: up, functions, runs, retry."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from embedlake.cli.output import console, emit_json, table
from embedlake.errors import NotFound

Ws = Annotated[Path, typer.Argument(help="Workspace folder (made by `embedlake init`).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def register(app: typer.Typer) -> None:
    for command in (up, functions, runs, retry):
        app.command()(command)


def up(
    ws: Ws,
    until_idle: Annotated[bool, typer.Option(help="Exit once every event is handled.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --until-idle: give up after this many seconds.")
    ] = 3600.0,
    log_format: Annotated[
        str,
        typer.Option(
            help="text, or json: one object a line with the function, invocation and event ids."
        ),
    ] = "text",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every attempt.")] = False,
) -> None:
    """Start the functions runtime (dispatcher, workers, watcher); runs until stopped."""
    import logging

    from embedlake.runtime import Runtime
    from embedlake.runtime.logs import configure
    from embedlake.workspace import Workspace

    configure(log_format, logging.INFO if verbose else logging.WARNING)

    stop = threading.Event()
    with Workspace.open(ws) as w, Runtime(w) as runtime:
        # installed after the runtime started: ray.init installs a SIGTERM handler of its own
        # that ends the process at once, with no graceful stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        names = ", ".join(spec.name for spec in runtime.functions)
        console.print(
            f"runtime up as {w.settings.executor_id()}: functions {names}; "
            f"engine {w.settings.runtime.engine}; "
            f"watching {', '.join(w.settings.runtime.watch_prefixes)}",
            highlight=False,
        )
        if until_idle:
            if not runtime.wait_idle(timeout):
                console.print("[yellow]still busy at the timeout[/]", markup=True)
                raise typer.Exit(1)
            return
        stop.wait()
        console.print("stopping: interrupted invocations resume at the next start")


def functions(ws: Ws, as_json: Json = False) -> None:
    """Functions with their triggers, concurrency, timeout, retries, whether durable, last runs."""
    from embedlake.functions.loading import load_functions
    from embedlake.runtime.service import describe
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        rows = describe(load_functions(w))
        for row in rows:
            recent = w.catalog.events.invocations(function=row["function"], limit=1000)
            row["runs"] = len(recent)
            row["dead"] = sum(1 for i in recent if i.status == "dead")
            row["last"] = recent[0].status if recent else None
    if as_json:
        emit_json(rows)
    else:
        table("functions", list(rows[0]), [list(r.values()) for r in rows])


def runs(
    ws: Ws,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed", help="Only dead-lettered runs (not those a retry has since run well)."
        ),
    ] = False,
    function: Annotated[str | None, typer.Option(help="Only this function.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Json = False,
) -> None:
    """Invocations: status, attempts, duration, error."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        events = w.catalog.events
        found = events.invocations(
            function=function, status="dead" if failed else None, limit=limit
        )
        if failed:  # a dead letter a retry (`embedlake retry`: "<id>~N") ran well is dealt with
            found = [i for i in found if not _retried_well(events, i.id)]
    rows: list[dict[str, Any]] = [
        {
            "id": i.id,
            "function": i.function,
            "status": i.status,
            "attempts": i.attempts,
            "seconds": i.seconds,
            "error": i.error,
            "enqueued_at": i.enqueued_at,
        }
        for i in found
    ]
    if as_json:
        emit_json(rows)
    else:
        table(
            "runs",
            ["id", "function", "status", "attempts", "seconds", "error"],
            [
                (
                    r["id"],
                    r["function"],
                    r["status"],
                    r["attempts"],
                    r["seconds"],
                    (r["error"] or "")[:120],
                )
                for r in rows
            ],
        )


def retry(ws: Ws, run_id: Annotated[str, typer.Argument(help="A dead-lettered run's id.")]) -> None:
    """Re-drive a dead-lettered invocation (it runs when the runtime is up)."""
    from embedlake.runtime.service import redrive
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        new_id = redrive(w, run_id)
    console.print(f"re-driven as {new_id}", highlight=False)


def _retried_well(events: Any, run_id: str) -> bool:
    base = run_id.split("~", 1)[0]
    number = 1
    while True:
        try:
            again = events.invocation(f"{base}~{number}")
        except NotFound:
            return False
        if again.status == "succeeded":
            return True
        number += 1
