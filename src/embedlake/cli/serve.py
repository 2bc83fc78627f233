"""API commands: serve, and keys (create, list, revoke)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from embedlake.cli.output import console, emit_json, table
from embedlake.errors import ConfigError

Ws = Annotated[Path, typer.Argument(help="Workspace folder (made by `embedlake init`).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

keys = typer.Typer(help="API keys: create (shown once, stored hashed), list, revoke.")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys, name="keys")


def serve(
    ws: Ws,
    role: Annotated[
        str, typer.Option(help="all (one process), embed (encoder only) or search (index, docs).")
    ] = "all",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    up: Annotated[
        bool, typer.Option(help="Also run the functions runtime in this process (one worker).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve the HTTP API (OpenAPI at /docs and /openapi.json) until stopped."""
    import uvicorn

    from embedlake.api.app import FACTORY_ENV, ROLES, create_app
    from embedlake.api.auth import is_loopback
    from embedlake.api.protocol import HeaderDeadline
    from embedlake.workspace import Workspace

    if role not in ROLES:
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if up and workers > 1:
        raise ConfigError("--up runs the runtime in the serving process: use it with --workers 1")
    with ExitStack() as stack:
        w = stack.enter_context(Workspace.open(ws))
        if w.settings.api.auth == "open" and not is_loopback(host):
            raise ConfigError(
                f"api.auth is open (no keys): bind a loopback address, not {host!r}, or use keys"
            )
        console.print(
            f"serving {w.settings.workspace} ({role}) on http://{host}:{port} "
            f"with {workers} worker(s); auth: {w.settings.api.auth}",
            highlight=False,
        )
        if workers > 1:
            os.environ[FACTORY_ENV] = json.dumps({"workspace": str(ws.resolve()), "role": role})
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="embedlake-prom-"))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            uvicorn.run(
                "embedlake.cli.serve:worker_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                limit_concurrency=w.settings.api.max_connections,
                http=HeaderDeadline,  # each worker sets its deadline (worker_app)
            )
            return
        if up:
            from embedlake.runtime import Runtime

            stack.enter_context(Runtime(w))
        HeaderDeadline.seconds = w.settings.api.header_timeout_seconds
        uvicorn.run(
            create_app(w, role),
            host=host,
            port=port,
            log_level=log_level,
            limit_concurrency=w.settings.api.max_connections,
            http=HeaderDeadline,
        )


def worker_app() -> object:
    """The factory each ``serve --workers N`` worker process calls (an entry point): the CPU cap
    before the app's modules import NumPy, faiss and numba, which size their pools at import."""
    from embedlake import machine

    machine.cap_thread_pools()
    from embedlake.api.app import from_environment
    from embedlake.api.protocol import HeaderDeadline

    app = from_environment()
    HeaderDeadline.seconds = app.state.settings.api.header_timeout_seconds
    return app


@keys.command("create")
def create_key(
    ws: Ws,
    scope: Annotated[
        list[str], typer.Option(help="search, embed, write or admin (repeat for several).")
    ],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: Json = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        pepper = w.settings.api.key_pepper
        plain, key = w.catalog.keys.create(
            scope, name, pepper=pepper.get_secret_value().encode() if pepper else b""
        )
    if as_json:
        emit_json({"key": plain, "id": key.key_id, "scopes": list(key.scopes), "name": key.name})
        return
    console.print(plain, highlight=False, soft_wrap=True)
    typer.echo(
        f"key {key.key_id} ({', '.join(key.scopes)}): store it now, it is not shown again",
        err=True,
    )


@keys.command("list")
def list_keys(ws: Ws, as_json: Json = False) -> None:
    """Keys by id, name, scopes and state (never the keys themselves)."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        found = w.catalog.keys.all()
    rows = [
        {
            "id": k.key_id,
            "name": k.name,
            "scopes": list(k.scopes),
            "created_at": k.created_at,
            "revoked_at": k.revoked_at,
        }
        for k in found
    ]
    if as_json:
        emit_json(rows)
    else:
        table(
            "API keys",
            ["id", "name", "scopes", "created", "revoked"],
            [
                (r["id"], r["name"], ", ".join(k.scopes), k.created_at, k.revoked_at)
                for r, k in zip(rows, found, strict=True)
            ],
        )


@keys.command("revoke")
def revoke_key(ws: Ws, key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key: serving processes refuse it within api.key_cache_seconds."""
    from embedlake.workspace import Workspace

    with Workspace.open(ws) as w:
        w.catalog.keys.revoke(key_id)
    console.print(f"revoked {key_id}", highlight=False)
