"""The ``embedlake`` command: entry point, logging set-up and the one place errors become exit codes.

Exit codes: 0 success, 1 rejected records under ``ingest --strict``, 2 bad input or configuration,
3 something missing, 4 a backend failure.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from embedlake import machine
from embedlake.cli import aws, backup, commands, demo, releases, runtime, serve
from embedlake.cli.output import errors, json_mode
from embedlake.errors import BackendError, EmbedlakeError, NotFound


class _Commands(TyperGroup):
    """The root group: a command called with ``--json`` runs in :func:`json_mode`, so that its
    stdout holds one JSON document whatever the libraries it calls print."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (of typer's vendored click)
        with json_mode("--json" in ctx.args):  # the command's own arguments, not yet parsed
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Commands,
    name="embedlake",
    help="Drop documents or a model into the lake; embedding, indexing and benchmarking follow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
commands.register(app)
runtime.register(app)
releases.register(app)
serve.register(app)
backup.register(app)
app.command("demo")(demo.demo)
app.add_typer(aws.app, name="aws")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    from rich.logging import RichHandler  # here: `--help` does not run this, nor need it

    machine.cap_thread_pools()  # before any command imports torch, faiss or numba

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=False)],
        force=True,
    )
    # bm25s sets its own logger to DEBUG; keep libraries at our level.
    for noisy in ("bm25s", "sentence_transformers", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exit_code(exc: EmbedlakeError) -> int:
    if isinstance(exc, NotFound):
        return 3
    if isinstance(exc, BackendError):
        return 4
    return 2


def main() -> None:
    try:
        app()
    except EmbedlakeError as exc:
        # plain write: a rich console would wrap the one-line message at the terminal width
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
