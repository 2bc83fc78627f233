"""Every ``--json`` command prints exactly one JSON document on stdout, whatever the libraries it
calls print (the trainer's metrics dict, progress bars, rich consoles): a script can parse it.

The commands are read from the Typer app, so a new command with ``--json`` fails here until it has
a case below. They run in this process (Typer's runner keeps stdout and stderr apart), on one small
workspace; the probe's own case, fine-tuning, runs as a user runs it, in its own process, where
output of C code to the file descriptor is redirected too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import typer.main
from typer.testing import CliRunner

from embedlake.cli.app import app
from tests.conftest import small_collection

FAST = {"EMBEDLAKE_MAP__METHOD": "pca", "EMBEDLAKE_EMBED__MODEL": "lsa"}


def json_commands() -> list[str]:
    """Every command of the app (sub-commands too) that has a ``--json`` option."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), command

    root = typer.main.get_command(app)
    return [
        name
        for name, command in walk(root, [])
        if any("--json" in getattr(p, "opts", []) for p in command.params)
    ]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **FAST, **(env or {})},
        timeout=600,
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr[-2000:]}"
    return proc


def one_document(*args: str) -> Any:
    """Run with --json: stdout must be one JSON document and nothing else."""
    result = CliRunner().invoke(app, [*args, "--json"], env=FAST)
    assert result.exit_code == 0, f"{args}: {result.stderr[-2000:]}"
    assert result.exception is None, repr(result.exception)
    out = result.stdout
    try:
        return json.loads(out)
    except ValueError as exc:
        raise AssertionError(f"`embedlake {' '.join(args)} --json` printed:\n{out[:2000]}") from exc


Case = Callable[[dict[str, Any]], list[str]]


def cases(ws: str, data: str, tmp: Path) -> dict[str, Case]:
    """The arguments of each command, in the order they run (later ones use earlier results)."""
    return {
        "ingest": lambda s: [ws, data],
        "embed": lambda s: [ws, "--model", "lsa"],
        "index": lambda s: [ws],
        "search": lambda s: [ws, "renal failure"],
        "bench": lambda s: [ws, "--no-bm25"],
        "sql": lambda s: [ws, "select count(*) as n from documents"],
        "models": lambda s: [ws],
        "status": lambda s: [ws],
        "functions": lambda s: [ws],
        "runs": lambda s: [ws],
        "release": lambda s: [ws, "--model", "lsa"],
        "train": lambda s: [ws, "--name", "lsa-t", "--kind", "lsa", "--components", "16", "--now"],
        "releases": lambda s: [ws],
        "compare": lambda s: [ws, *[r["release"] for r in s["releases"][:2]]],
        "map": lambda s: [ws],
        "catch-up": lambda s: [ws, s["release"]["release"]],
        "keys create": lambda s: [ws, "--scope", "search"],
        "keys list": lambda s: [ws],
        "export": lambda s: [ws, str(tmp / "backup")],
        "import": lambda s: [str(tmp / "restored"), str(tmp / "backup")],
        "recover": lambda s: [_without_catalog(ws)],
    }


def _without_catalog(ws: str) -> str:
    """The workspace with its catalog lost: what `recover` is for."""
    (Path(ws) / "catalog.db").unlink()
    return ws


def test_every_json_command_prints_one_json_document(tmp_path: Path) -> None:
    ws, data = str(tmp_path / "ws"), str(small_collection(tmp_path / "small"))
    for folder in (ws, str(tmp_path / "restored")):
        assert CliRunner().invoke(app, ["init", folder]).exit_code == 0
    table = cases(ws, data, tmp_path)
    assert sorted(table) == sorted(json_commands()), "give each --json command a case here"
    seen: dict[str, Any] = {}
    for name, arguments in table.items():
        seen[name] = one_document(*name.split(), *arguments(seen))


def test_fine_tuning_prints_only_its_json_document(tmp_path: Path) -> None:
    """The probe's case: the trainer printed its metrics dict on stdout before the document.
    A few pairs and one epoch of MiniLM: the trainer runs, briefly."""
    ws, data = str(tmp_path / "ws"), str(small_collection(tmp_path / "small", queries=2))
    assert CliRunner().invoke(app, ["init", ws]).exit_code == 0
    one_document("ingest", ws, data)
    # the output is the claim: negatives mined from the fewest documents the setting allows, at
    # 64 word pieces (the mining's encoding was 19 of the test's 30 s of CPU)
    short = {"EMBEDLAKE_TRAINING__MINING_CORPUS": "100", "EMBEDLAKE_EMBED__MAX_SEQ_LENGTH": "64"}
    args = ("--name", "ft", "--pairs", f"qrels:{data}", "--epochs", "1", "--json")
    proc = run("train", ws, *args, env=short)
    assert json.loads(proc.stdout)["model"].startswith("ft@")
    # the trainer prints nothing at all, not even to stderr (its metrics go to the log)
    assert "train_runtime" not in proc.stderr


def test_json_mode_sends_everything_else_to_stderr_even_from_the_file_descriptor() -> None:
    """What C code writes to file descriptor 1, and a library's print, land on stderr."""
    script = (
        "import os, sys\n"
        "from embedlake.cli.output import emit_json, json_mode\n"
        "with json_mode():\n"
        "    print({'train_runtime': 1.0})\n"
        "    os.write(1, b'from C\\n')\n"
        "    emit_json({'ok': True})\n"
        "print('after')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout == '{\n  "ok": true\n}\nafter\n'
    assert "train_runtime" in proc.stderr and "from C" in proc.stderr
