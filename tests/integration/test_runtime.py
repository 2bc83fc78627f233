"""The functions runtime contract: real DBOS, real files, real threads, on both engines: SQLite
(the embedded default) and PostgreSQL (catalog and DBOS queue in one database, as in production)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedlake import Workspace
from embedlake.errors import Conflict, InputError
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.functions import Functions, on_event
from embedlake.functions.context import Context
from embedlake.ingest import ingest_path
from embedlake.runtime import Runtime
from embedlake.runtime.service import redrive
from embedlake.search.searcher import Searcher
from tests.conftest import collection, write_jsonl
from tests.e2e.test_serve import cli

FAST = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_MAP__METHOD": "pca",  # UMAP is tested where maps are (test_map, e2e)
    "EMBEDLAKE_EMBED__SHARD_SIZE": "400",
    "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.02",
    "EMBEDLAKE_RUNTIME__RETRY_BASE_SECONDS": "0.05",
}

extra = Functions()
_lock = threading.Lock()
_state: dict[str, Any] = {"running": 0, "peak": 0, "calls": 0}


@extra.function(on=on_event("test.fail"), retries=2)
def always_fails(event: Event, ctx: Context) -> None:
    raise RuntimeError(f"cannot handle {event.subject}")


@extra.function(on=on_event("test.bad-input"), retries=3)
def refuses_input(event: Event, ctx: Context) -> None:
    raise InputError(f"{event.subject}: not a valid thing")


@extra.function(on=on_event("test.ok"), concurrency=2)
def slow_ok(event: Event, ctx: Context) -> None:
    with _lock:
        _state["running"] += 1
        _state["peak"] = max(_state["peak"], _state["running"])
        _state["calls"] += 1
    time.sleep(0.5)  # long enough for the queue to start a second one on a loaded machine
    with _lock:
        _state["running"] -= 1


@extra.function(on=on_event("test.slow"), timeout=0.5, retries=0)
def too_slow(event: Event, ctx: Context) -> None:
    # no Python thread can be stopped from outside: this sleep ends, after the attempt was
    # recorded as timed out (its waiter gives up at the deadline) and the thread left to finish
    time.sleep(3.0)
    ctx.step("after the deadline", _state.__setitem__, "late step", True)  # but this never runs


@extra.function(on=on_event("test.doc"), concurrency=4)
def write_doc(event: Event, ctx: Context) -> None:
    from embedlake.catalog.documents import Document

    ctx.ws.catalog.documents.upsert([Document(event.subject, "burst", "", event.data["text"])])


def _workspace(tmp_path: Path, backend: dict[str, str]) -> Workspace:
    return Workspace.init(tmp_path / "ws", environ={**FAST, **backend})


@pytest.fixture
def ws(tmp_path: Path, backend: dict[str, str]) -> Iterator[Workspace]:
    with _workspace(tmp_path, backend) as workspace:
        yield workspace


def _drop(ws: Workspace, source: Path, key: str, *, noticed: bool = True) -> None:
    """A file copied into the lake folder from outside, as a user's `cp` would; with
    ``noticed``, wait until the running runtime's watcher has recorded it."""
    target = ws.settings.workspace / "lake" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if noticed:
        wait_noticed(ws, key)


def wait_noticed(ws: Workspace, key: str) -> None:
    """Until the runtime's watcher has recorded ``key`` (its event is in the outbox)."""
    deadline = time.monotonic() + 60
    while key not in ws.catalog.events.seen(key):
        assert time.monotonic() < deadline, f"the watcher never noticed {key}"
        time.sleep(0.02)


def test_a_dropped_file_ends_searchable_with_no_further_command(ws: Workspace) -> None:
    with Runtime(ws) as runtime:
        _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
        assert runtime.wait_idle(120)
    runs = {i.function: i for i in ws.catalog.events.invocations()}
    assert {f: (runs[f].status, runs[f].attempts) for f in ("ingest", "embed-new")} == {
        "ingest": ("succeeded", 1),
        "embed-new": ("succeeded", 1),
    }
    assert {i.status for i in runs.values()} == {"succeeded"}
    assert ws.catalog.documents.count() == 1033
    searcher = Searcher(ws)
    assert searcher.record.n_vectors == 1033
    assert len(searcher.search("cancer cells", 5)) == 5


def test_a_file_dropped_while_the_runtime_was_down_is_handled_at_restart(
    ws: Workspace, tmp_path: Path
) -> None:
    first = tmp_path / "a.jsonl"
    first.write_text(
        "".join(f'{{"_id": "a{i}", "text": "apple pie number {i}"}}\n' for i in range(5))
    )
    with Runtime(ws) as runtime:
        _drop(ws, first, "raw/fruit/a.jsonl")
        assert runtime.wait_idle(60)
    second = tmp_path / "b.jsonl"
    second.write_text('{"_id": "b1", "text": "banana bread"}\n')
    _drop(ws, second, "raw/fruit/b.jsonl", noticed=False)  # nobody is watching now
    with Runtime(ws) as runtime:
        assert runtime.wait_idle(60)
    ingests = ws.catalog.events.invocations(function="ingest")
    assert len(ingests) == 2 and all(i.status == "succeeded" for i in ingests)
    assert ws.catalog.documents.count() == 6
    assert Searcher(ws).record.n_vectors == 6


def test_a_failing_handler_is_dead_lettered_while_others_flow(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    _state.update(running=0, peak=0, calls=0)
    with _workspace(tmp_path, backend) as ws, Runtime(ws, extra) as runtime:
        events = ws.catalog.events
        events.add(Event("test.fail", "bad-input"))
        for n in range(6):
            events.add(Event("test.ok", f"job-{n}"))
        assert runtime.wait_idle(60)
        [dead] = events.invocations(function="always-fails")
        assert (dead.status, dead.attempts) == ("dead", 3)  # first try + 2 retries
        assert dead.error == "RuntimeError: cannot handle bad-input"
        oks = events.invocations(function="slow-ok")
        assert len(oks) == 6 and {i.status for i in oks} == {"succeeded"}
        assert _state["peak"] == 2  # the concurrency limit held, and was used
        again = redrive(ws, dead.id)
        with pytest.raises(Conflict, match="re-driven already"):  # not queued twice
            redrive(ws, dead.id)
        assert runtime.wait_idle(60)
        redriven = events.invocation(again)
        assert (redriven.status, redriven.attempts) == ("dead", 3)
        assert redrive(ws, dead.id) == again[: again.index("~")] + "~2"  # dead again: once more
        with pytest.raises(Exception, match="not dead-lettered"):
            redrive(ws, oks[0].id)


def test_an_input_error_is_dead_lettered_at_once_with_its_reason(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    """Permanent (an input or config error): no retry. Transient (anything else): retried."""
    with _workspace(tmp_path, backend) as ws, Runtime(ws, extra) as runtime:
        ws.catalog.events.add(Event("test.bad-input", "row 7"))
        ws.catalog.events.add(Event("test.fail", "flaky"))
        assert runtime.wait_idle(60)
        [dead] = ws.catalog.events.invocations(function="refuses-input")
        assert (dead.status, dead.attempts) == ("dead", 1)
        assert dead.error == "InputError: row 7: not a valid thing"
        [retried] = ws.catalog.events.invocations(function="always-fails")
        assert (retried.status, retried.attempts) == ("dead", 3)


def test_an_ingest_with_an_id_prefix_is_stored_once_when_the_runtime_runs(
    ws: Workspace, tmp_path: Path
) -> None:
    rows: list[object] = [{"_id": str(n), "text": f"note number {n}"} for n in range(5)]
    [report] = ingest_path(ws, write_jsonl(tmp_path / "n.jsonl", rows), id_prefix="p:")
    assert report.inserted == 5
    with Runtime(ws) as runtime:
        assert runtime.wait_idle(60)
    ids = sorted(d.id for d in ws.catalog.documents.iter_live())
    assert ids == [f"p:{n}" for n in range(5)]
    ingests = ws.catalog.events.invocations(function="ingest")  # the copy and its sidecar
    assert ingests and {i.status for i in ingests} == {"succeeded"}


def test_documents_the_cli_ingests_are_embedded_by_the_runtime(
    ws: Workspace, backend: dict[str, str], tmp_path: Path
) -> None:
    """`embedlake ingest` copies its file into raw/ and ingests it; the runtime's ingest function,
    woken by the copy, ingests it too and finds nothing changed if the command came first. The
    command announces what it changed, so the documents are embedded and indexed either way:
    with a runtime up at the time, and with one started afterwards."""
    env = {**FAST, **backend}
    folder = str(ws.settings.workspace)
    lines = (collection("med") / "corpus.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_text("".join(lines[:40]))
    with Runtime(ws) as runtime:
        cli("ingest", folder, str(tmp_path / "a.jsonl"), env=env)
        assert runtime.wait_idle(120)
    assert Searcher(ws).record.n_vectors == 40
    cli(
        "ingest",
        folder,
        str(write_jsonl(tmp_path / "b.jsonl", [{"_id": "b", "text": "pear"}])),
        env=env,
    )
    with Runtime(ws) as runtime:
        assert runtime.wait_idle(120)
    assert Searcher(ws).record.n_vectors == 41
    embeds = ws.catalog.events.invocations(function="embed-new")
    assert embeds and {i.status for i in embeds} == {"succeeded"}


def test_a_handler_past_its_timeout_fails_with_a_timeout(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    with _workspace(tmp_path, backend) as ws, Runtime(ws, extra) as runtime:
        ws.catalog.events.add(Event("test.slow", "x"))
        assert runtime.wait_idle(60)
        [run] = ws.catalog.events.invocations(function="too-slow")
        assert run.status == "dead"
        assert run.error is not None and "timeout of 0.5 s" in run.error
        assert "late step" not in _state


@pytest.mark.slow
def test_a_burst_of_1000_events_is_processed_exactly_once_in_effect(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    with _workspace(tmp_path, backend) as ws, Runtime(ws, extra) as runtime:
        events = ws.catalog.events
        burst = [
            Event("test.doc", f"doc-{n:04d}", {"text": f"document {n} about topic {n % 7}"})
            for n in range(1000)
        ]
        for event in burst:
            events.add(event)
        for event in burst[:100]:
            events.add(event)  # delivered twice: the outbox keeps one
        time.sleep(0.5)
        events.set_state("dispatch.cursor", "0")  # a dispatcher crash before its cursor moved
        assert runtime.wait_idle(600)
        runs = events.invocations(function="write-doc")
        assert len(runs) == 1000 and {r.status for r in runs} == {"succeeded"}
        assert len({r.event_id for r in runs}) == 1000
        assert ws.catalog.documents.count() == 1000
        events.add(Event(DOCUMENTS_CHANGED, "burst"))
        assert runtime.wait_idle(120)
        searcher = Searcher(ws)  # inside: a closed workspace's database connections leak
        assert searcher.record.n_vectors == 1000
        ids = [h.id for h in searcher.search("topic 3", 50)]
        assert len(ids) == len(set(ids))


def test_the_recovery_limit_is_the_setting(tmp_path: Path) -> None:
    """runtime.max_recovery_attempts reaches DBOS, which reads it when it recovers a workflow."""
    from dbos._registrations import get_func_info

    from embedlake.runtime import durable

    environ = {**FAST, "EMBEDLAKE_RUNTIME__MAX_RECOVERY_ATTEMPTS": "3"}
    with Workspace.init(tmp_path / "ws", environ=environ) as ws, Runtime(ws):
        limits = {
            w.__name__: getattr(get_func_info(w), "max_recovery_attempts", None)
            for w in (durable.invoke, durable.run_attempt, durable.map_item)
        }
    assert limits == {"invoke": 3, "run_attempt": 3, "map_item": 3}
    with Workspace.init(tmp_path / "ws2", environ=FAST) as ws, Runtime(ws):
        assert getattr(get_func_info(durable.invoke), "max_recovery_attempts", None) == 10
