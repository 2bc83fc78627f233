"""Hostile and careless uses of a whole workspace, each refused with a clear error and nothing
stored lost (an outside review, 2026-12-08): a snapshot written into the workspace it reads, a
tampered or truncated snapshot, SQL that writes, odd file names, a deep sidecar, a damaged
catalog file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedlake import Workspace
from embedlake.backup import export, import_
from embedlake.cli.app import app
from embedlake.errors import ConfigError, Conflict, InputError
from embedlake.ingest import ingest_path
from embedlake.ingest.pipeline import ingest_object
from embedlake.runtime.core import record_object
from embedlake.warehouse import query
from tests.conftest import collection, write_jsonl

DOCS = [{"_id": f"d{n}", "title": f"doc {n}", "text": f"heat transfer note {n}"} for n in range(8)]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    with Workspace.init(tmp_path / "ws", environ={}) as workspace:
        ingest_path(workspace, write_jsonl(tmp_path / "notes.jsonl", DOCS))
        yield workspace


def _lake(ws: Workspace) -> dict[str, bytes]:
    return {o.key: ws.lake.get(o.key) for o in ws.lake.list("")}


def test_a_snapshot_into_the_workspace_or_a_busy_place_is_refused(
    ws: Workspace, tmp_path: Path
) -> None:
    """`export ws ws` emptied every lake object (written while read) and said it succeeded."""
    before = _lake(ws)
    root = ws.settings.workspace
    for dest, error in (
        (root, Conflict),  # not empty
        (root / "snap", InputError),  # inside the workspace
        (root / "lake" / "snap", InputError),
        (tmp_path, Conflict),  # holds the workspace: not empty
    ):
        with pytest.raises(error):
            export(ws, str(dest))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export(ws, str(tmp_path / "a-file"))
    assert _lake(ws) == before


def test_a_tampered_or_truncated_snapshot_leaves_nothing_behind(
    ws: Workspace, tmp_path: Path
) -> None:
    export(ws, str(tmp_path / "snap"))
    corpus = tmp_path / "snap" / "lake" / "raw" / "notes" / "notes.jsonl"
    corpus.write_bytes(corpus.read_bytes() + b'{"_id": "evil", "text": "tampered"}\n')
    with Workspace.init(tmp_path / "new", environ={}) as new:
        with pytest.raises(InputError, match="content differs"):
            import_(new, str(tmp_path / "snap"))
        assert not list(new.lake.list("")) and new.catalog.documents.count() == 0
    export(ws, str(tmp_path / "snap2"))
    table = tmp_path / "snap2" / "catalog" / "documents.jsonl.gz"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    with Workspace.init(tmp_path / "new2", environ={}) as new:
        with pytest.raises(InputError, match="damaged"):
            import_(new, str(tmp_path / "snap2"))
        assert not list(new.lake.list("")) and new.catalog.documents.count() == 0
    manifest = tmp_path / "snap2" / "manifest.json"
    for broken in ("not json", "[]", json.dumps({"format": "embedlake-snapshot/1"})):
        manifest.write_text(broken)
        with Workspace.init(tmp_path / "new3", environ={}) as new, pytest.raises(InputError):
            import_(new, str(tmp_path / "snap2"))


def test_sql_reads_the_lake_only(ws: Workspace, tmp_path: Path) -> None:
    """A COPY ... TO over a curated Parquet file succeeded, and recover then read the damage."""
    parquet = next(o.key for o in ws.lake.list("curated") if o.key.endswith(".parquet"))
    before = ws.lake.get(parquet)
    target = Path(ws.lake.local_path(parquet) or "")
    for statement in (
        f"copy (select * from document_log limit 1) to '{target}' (format parquet)",
        f"attach '{tmp_path / 'x.db'}'",
        "create table t as select 1",
        "select 1; select 2",
    ):
        with pytest.raises(InputError, match="one query that reads"):
            query(ws, statement)
    with pytest.raises(InputError, match="disabled by configuration"):
        query(ws, "select * from read_csv('/etc/hostname')")
    assert ws.lake.get(parquet) == before
    assert query(ws, "select count(*) from documents")[1] == [(8,)]


def test_file_names_the_lake_cannot_hold_are_refused(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    write_jsonl(folder / "ok.jsonl", [{"_id": "ok", "text": "x"}])
    write_jsonl(folder / ("y" * 240 + ".jsonl"), [{"_id": "long", "text": "x"}])
    bad = bytes(folder) + b"/b\xffd.jsonl"
    Path(bad.decode("utf-8", "surrogateescape")).write_text('{"_id": "bad", "text": "x"}\n')
    reports = {Path(r.file).name[:3]: r for r in ingest_path(ws, folder)}
    assert reports["ok."].inserted == 1
    assert "too long for the lake" in str(reports["yyy"].reasons[0])
    assert "not valid UTF-8" in str(reports["b\udcffd"].reasons[0])
    assert not record_object(ws, "raw/odd/b\udcffd.jsonl")  # the runtime's watch: skipped


def test_a_deep_sidecar_is_bad_input_not_a_retry(ws: Workspace) -> None:
    """Nested past the parser's depth, it raised RecursionError: retried, then dead-lettered."""
    ws.lake.put("raw/side/s.jsonl", b'{"_id": "s1", "text": "x"}\n')
    ws.lake.put("raw/side/s.jsonl.ingest.json", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(InputError, match="not a JSON object of options"):
        ingest_object(ws, "raw/side/s.jsonl")


def test_a_clean_reread_clears_the_quarantine(ws: Workspace) -> None:
    ws.lake.put("raw/half/h.jsonl", b'{"_id": "h1", "text": "x"}\n{"_id": "h2", "te')
    assert ingest_object(ws, "raw/half/h.jsonl").rejected == 1
    assert ws.lake.exists("quarantine/half/h.jsonl.reason.json")
    ws.lake.put("raw/half/h.jsonl", b'{"_id": "h1", "text": "x"}\n{"_id": "h2", "text": "y"}\n')
    assert ingest_object(ws, "raw/half/h.jsonl").rejected == 0
    assert not ws.lake.exists("quarantine/half/h.jsonl.reason.json")


def test_keys_and_aliases_with_names_that_cannot_be_shown_or_stored(ws: Workspace) -> None:
    for name in ("a\nb\x1b[31mred", "n" * 201):
        with pytest.raises(InputError, match="key's name"):
            ws.catalog.keys.create(["search"], name)
    from embedlake.catalog.releases import check_alias

    assert check_alias("é" * 20) == "é" * 20
    with pytest.raises(InputError, match="too long once escaped"):
        check_alias("é" * 50)  # 100 bytes, 300 characters percent-encoded


def test_a_damaged_catalog_file_is_set_aside_by_recover_force(ws: Workspace) -> None:
    catalog = ws.settings.workspace / "catalog.db"
    ws.close()
    for extra in ("-wal", "-shm"):
        Path(f"{catalog}{extra}").unlink(missing_ok=True)
    catalog.write_bytes(b"\x00" * 4096)
    runner = CliRunner()
    refused = runner.invoke(app, ["recover", str(ws.settings.workspace)]).exception
    assert isinstance(refused, ConfigError) and "--force" in str(refused)
    done = runner.invoke(app, ["recover", str(ws.settings.workspace), "--force"])
    assert done.exit_code == 0, done.output
    assert list(catalog.parent.glob("catalog.db.damaged-*"))
    with Workspace.open(ws.settings.workspace, environ={}) as again:
        assert again.catalog.documents.count() == 8


def test_the_watcher_goes_on_after_its_watch_fails(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """watchfiles raised on a file name that is not UTF-8, and the watcher thread ended: the
    runtime stayed up and ingested nothing more."""
    from embedlake.runtime import watch

    watcher = watch.Watcher(ws, ["raw/"])
    calls: list[str] = []

    def failing() -> None:
        calls.append("watch")
        if len(calls) == 1:
            raise RuntimeError("Unable to decode path")
        watcher.stop()  # the second watch ends as a stop ends it

    monkeypatch.setattr(watcher, "_watch", failing)
    monkeypatch.setattr(watch, "scan", lambda ws, prefixes: calls.append("scan") or 0)
    watcher.run()
    assert calls == ["watch", "scan", "watch"]


def test_a_build_in_this_process_that_stops_leaves_no_release_building(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped part way (Ctrl-C, an error), a `release` left its release `building` for good:
    publish refused it, retain kept it, no command cleared it."""
    from embedlake.cli.releases import build_now
    from embedlake.releases import build as building
    from embedlake.training.train import train

    ingest_path(ws, collection("med"))  # enough text for LSA to fit
    prefix, _ = train(ws, name="lsa-s", kind="lsa", components=16)
    from embedlake.models import artifacts

    record, _ = artifacts.register_from_lake(ws, prefix)

    def interrupted(*_: object) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr(building.reduce, "reduce_release", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_now(ws, record.ref, "a build to stop", publish=True)
    [release] = ws.catalog.releases.all()
    assert release.status == "failed" and "the build stopped: KeyboardInterrupt" in release.reason
    from embedlake.releases.compare import compare

    with pytest.raises(InputError, match="only built releases can be compared"):
        compare(ws, release.id, release.id)  # (it named a missing BM25 folder)
