"""A runtime that sleeps: no catalog work while idle, woken by work as it is written.

Functional, not timing: the safety timeout (``runtime.wake_timeout``) is an hour in these tests,
so an invocation that finishes was started because its event was announced, in this process on
SQLite, by PostgreSQL's NOTIFY from another process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from embedlake import Workspace
from embedlake.events import Event
from embedlake.functions import Functions, on_event
from embedlake.functions.context import Context
from embedlake.runtime import Runtime
from embedlake.runtime.service import redrive

IDLE_WINDOW = 60.0  # seconds of idleness watched: the minute
SLEEPY = {
    "EMBEDLAKE_RUNTIME__WAKE_TIMEOUT": "3600",  # an hour: only an announcement wakes the runtime
    "EMBEDLAKE_RUNTIME__RETRY_BASE_SECONDS": "0.05",
    "EMBEDLAKE_RUNTIME__WATCH": "false",
}

sleepy = Functions()
_calls: list[str] = []


@sleepy.function(on=on_event("test.wake"), concurrency=2, retries=0)
def note(event: Event, ctx: Context) -> None:
    _calls.append(event.subject)


@sleepy.function(on=on_event("test.durable"), concurrency=2, retries=0, durable=True)
def keep(event: Event, ctx: Context) -> None:
    _calls.append(event.subject)


@sleepy.function(on=on_event("test.refuse"), retries=0)
def refuse(event: Event, ctx: Context) -> None:
    raise RuntimeError("no")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through ``engine`` while the block runs, from any thread."""
    seen: list[str] = []
    lock = threading.Lock()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with lock:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the runtime never finished the work"
        time.sleep(0.05)


@pytest.mark.slow
def test_an_idle_runtime_does_no_catalog_work_for_a_minute(tmp_path: Path) -> None:
    # the built-in functions, the lake watcher on: `embedlake up` as a user starts it
    with Workspace.init(tmp_path / "ws") as ws, Runtime(ws) as runtime:
        ws.catalog.events.add(Event("test.nobody", "warm-up"))  # one pass of real work first
        assert runtime.wait_idle(60)
        time.sleep(1.0)  # the pass that follows the wait's last look
        with statements(ws.catalog.engine) as seen:
            time.sleep(IDLE_WINDOW)
        assert seen == []
        assert not runtime.workflows.up  # no durable work: DBOS was never launched to poll
        # and it is asleep, not dead: an event still runs
        ws.catalog.events.add(Event("test.nobody", "after"))
        assert runtime.wait_idle(60)
        assert int(ws.catalog.events.get_state("dispatch.cursor")) == ws.catalog.events.latest_seq()


def test_events_wake_the_runtime_with_an_hour_long_safety_timeout(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    _calls.clear()
    with Workspace.init(tmp_path / "ws", environ={**SLEEPY, **backend}) as ws, Runtime(ws, sleepy):
        for n in range(5):  # one at a time: each is a wake-up of a sleeping dispatcher
            ws.catalog.events.add(Event("test.wake", f"one-{n}"))
            _until(lambda n=n: len(_calls) == n + 1)
        for n in range(20):  # a burst: more than the concurrency, so finishing wakes it too
            ws.catalog.events.add(Event("test.wake", f"burst-{n}"))
        _until(lambda: len(_calls) == 25)
        ws.catalog.events.add(Event("test.refuse", "x"))
        _until(lambda: {i.status for i in ws.catalog.events.invocations()} == {"succeeded", "dead"})
        [dead] = ws.catalog.events.invocations(function="refuse")
        again = redrive(ws, dead.id)  # a queued invocation, announced like an event
        _until(lambda: ws.catalog.events.invocation(again).status == "dead")
    assert sorted(_calls) == sorted(
        [f"one-{n}" for n in range(5)] + [f"burst-{n}" for n in range(20)]
    )


def test_an_event_another_process_writes_wakes_the_runtime(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    """Heard by PostgreSQL's NOTIFY, or on SQLite by watching the catalog's files."""
    _calls.clear()
    env = {**SLEEPY, **backend}
    path = tmp_path / "ws"
    with Workspace.init(path, environ=env) as ws, Runtime(ws, sleepy) as runtime:
        assert runtime.wake is not None
        assert runtime.wake.listening.wait(30)  # written after: only its announcement wakes us
        time.sleep(0.2)  # the wake-up the listener gives itself on connecting is spent
        writer = (
            "import json, sys; from pathlib import Path\n"
            "from embedlake import Workspace; from embedlake.events import Event\n"
            "with Workspace.open(Path(sys.argv[1]), environ=json.loads(sys.argv[2])) as w:\n"
            "    w.catalog.events.add(Event('test.wake', 'from-another-process'))\n"
        )
        subprocess.run([sys.executable, "-c", writer, str(path), json.dumps(backend)], check=True)
        _until(lambda: _calls == ["from-another-process"])
        [run] = ws.catalog.events.invocations(function="note")
        _until(lambda: ws.catalog.events.invocation(run.id).status == "succeeded")


def test_a_process_ignores_its_own_notify_and_hears_another_process(
    tmp_path: Path, postgres: Any
) -> None:
    """A commit that announces work wakes this process's listeners at once; the NOTIFY it also
    sends carries this process's origin, and this process's LISTEN leaves it (else every event
    costs the dispatcher a second look). Another origin's NOTIFY wakes it."""
    import psycopg
    from sqlalchemy import make_url

    from embedlake.catalog.announce import ORIGIN, WORK
    from embedlake.catalog.wake import Wake

    url = postgres.database()
    with Workspace.init(tmp_path / "ws", environ={"EMBEDLAKE_CATALOG__URL": url}) as ws:
        wake = Wake(ws.catalog.engine)
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            assert wake.listening.wait(30)
            wake.wait(0.5)  # the wake-up the listener gives itself on connecting

            def notify(origin: str) -> None:
                with psycopg.connect(plain, autocommit=True) as conn:
                    conn.execute("SELECT pg_notify(%s, %s)", (WORK, origin))

            notify(ORIGIN)
            assert not wake.wait(1.5)
            notify("another-process")
            assert wake.wait(30)
        finally:
            wake.close()


def test_an_invocation_whose_start_failed_is_queued_again_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DBOS cannot start a claimed invocation of a durable function once (its database
    unreachable, say): that one and the rest of its batch go back to the queue with their slots,
    and run without a restart."""
    from embedlake.runtime import workflows

    real, failed = workflows.DBOS.start_workflow, []

    def start_once_failing(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(args[1:2])  # the function whose start failed
            raise RuntimeError("DBOS's system database is unreachable")
        return real(*args, **kwargs)

    _calls.clear()
    with Workspace.init(tmp_path / "ws", environ=SLEEPY) as ws, Runtime(ws, sleepy):
        monkeypatch.setattr(workflows.DBOS, "start_workflow", start_once_failing)
        for n in range(3):  # more than `keep`'s two slots
            ws.catalog.events.add(Event("test.durable", f"n{n}"))
        _until(lambda: sorted(_calls) == ["n0", "n1", "n2"])
        runs = ws.catalog.events.invocations(function="keep")
        _until(lambda: {ws.catalog.events.invocation(r.id).status for r in runs} == {"succeeded"})
        assert failed == [("keep",)]
        assert [ws.catalog.events.invocation(r.id).attempts for r in runs] == [1, 1, 1]


def test_an_event_that_commits_after_a_later_one_is_still_routed(
    tmp_path: Path, postgres: Any
) -> None:
    """PostgreSQL numbers an event when it is inserted and shows it when its transaction commits:
    the router reads #n+1 while #n is in flight, routes #n+1, and routes #n once it commits (the
    cursor waits below it meanwhile)."""
    from embedlake.runtime.core import CURSOR
    from embedlake.runtime.router import Router

    url = postgres.database()
    env = {**SLEEPY, "EMBEDLAKE_CATALOG__URL": url, "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": url}
    path = tmp_path / "ws"
    with Workspace.init(path, environ=env) as ws, Workspace.open(path, environ=env) as other:
        router = Router(ws, sleepy)

        def queued() -> set[str]:
            return {i.event_id for i in ws.catalog.events.invocations()}

        with other.catalog.begin():  # another writer's transaction, still open
            other.catalog.events.add(Event("test.wake", "slow", id="slow"))
            ws.catalog.events.add(Event("test.wake", "fast", id="fast"))
            assert router.route() == 1
            assert queued() == {"fast"}
            assert router.gaps.waited(time.time()) != []
            cursor = int(ws.catalog.events.get_state(CURSOR, "0"))
            assert cursor < ws.catalog.events.latest_seq()  # not past the missing one
        assert router.route() == 1  # committed now: routed
        assert queued() == {"fast", "slow"}
        assert router.gaps.waited(time.time()) == []
        assert int(ws.catalog.events.get_state(CURSOR, "0")) == ws.catalog.events.latest_seq()
