"""What a user's data or a broken place does to the CLI: printed literally, refused with a line
that names the problem, never a traceback (an outside review, 2026-12-08)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from embedlake.cli import output
from embedlake.cli.app import app, exit_code
from embedlake.errors import ConfigError
from embedlake.workspace import Workspace


def test_user_data_in_a_table_or_a_line_is_never_read_as_markup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A title "Shock [/oops] tube" crashed every table it was in (rich's MarkupError)."""
    out = io.StringIO()
    screen = Console(file=out, width=200, markup=False)
    monkeypatch.setattr(output, "console", screen)
    output.table("[/title]", ["[/id]", "title"], [("[/bogus]", "Shock [/oops] [bold]tube")])
    output.console.print("deleted [/bogus]")
    printed = out.getvalue()
    for literal in ("[/title]", "[/id]", "[/bogus]", "Shock [/oops] [bold]tube"):
        assert literal in printed
    assert output.console.is_terminal is False  # (the shared consoles: markup off too)
    assert Console(markup=False)._markup is False
    assert output.errors._markup is False


def test_a_workspace_or_lake_that_cannot_be_a_folder_is_named(tmp_path: Path) -> None:
    a_file = tmp_path / "f.jsonl"
    a_file.write_text("{}\n")
    failed = CliRunner().invoke(app, ["init", str(a_file / "sub")]).exception
    assert isinstance(failed, ConfigError) and exit_code(failed) == 2  # main(): one line, exit 2
    assert "cannot create the workspace" in str(failed) and "Not a directory" in str(failed)
    with pytest.raises(ConfigError, match="cannot be a folder"):
        Workspace.init(tmp_path / "ws", environ={"EMBEDLAKE_LAKE__URL": str(a_file)})


def test_a_catalog_of_a_newer_embedlake_is_named_not_migrated(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", environ={}) as ws, ws.catalog.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigError, match="'9999', which this embedlake does not know"):
        Workspace.open(tmp_path / "ws", environ={})
    failed = CliRunner().invoke(app, ["migrate", str(tmp_path / "ws")]).exception
    assert isinstance(failed, ConfigError) and "does not know" in str(failed)


def test_an_ingest_of_several_paths_checks_them_all_first(tmp_path: Path) -> None:
    """The first file was committed, unannounced, before the missing second one was found."""
    from embedlake.errors import InputError

    with Workspace.init(tmp_path / "ws", environ={}):
        pass
    good = tmp_path / "good.jsonl"
    good.write_text('{"_id": "mp1", "text": "x"}\n')
    args = ["ingest", str(tmp_path / "ws"), str(good), str(tmp_path / "nope.jsonl")]
    failed = CliRunner().invoke(app, args).exception
    assert isinstance(failed, InputError) and "nope.jsonl" in str(failed)
    with Workspace.open(tmp_path / "ws", environ={}) as ws:
        assert ws.catalog.documents.count() == 0 and not list(ws.lake.list("raw/"))


def test_a_missing_workspace_is_not_found_and_a_file_is_named(tmp_path: Path) -> None:
    from embedlake.errors import NotFound

    missing = CliRunner().invoke(app, ["status", str(tmp_path / "nows")]).exception
    assert isinstance(missing, NotFound) and exit_code(missing) == 3
    (tmp_path / "f").write_text("x")
    a_file = CliRunner().invoke(app, ["status", str(tmp_path / "f")]).exception
    assert isinstance(a_file, ConfigError) and "is a file" in str(a_file)


def test_failed_runs_leave_out_a_dead_letter_a_retry_ran_well(tmp_path: Path) -> None:
    """A dead letter stayed under `runs --failed` after its retry succeeded."""
    import json

    from embedlake.events import Event

    with Workspace.init(tmp_path / "ws", environ={}) as ws:
        events = ws.catalog.events
        event = Event("test.thing", "subject")
        events.add(event)
        for run_id, status in (("a:f", "dead"), ("a:f~1", "succeeded"), ("b:f", "dead")):
            events.invocation_queued(run_id, "f", event.id)
            events.invocation_update(run_id, status=status)
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "ws"), "--failed", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == ["b:f"]
