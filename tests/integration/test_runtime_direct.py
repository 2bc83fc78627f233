"""First attempts run directly, DBOS only for durable work (docs/decisions/0028).

What must hold: a short invocation runs and is recorded without DBOS; a failed first attempt is
retried durably; a function that checkpoints without saying so is handed to a workflow at its
first step; DBOS, once its work is done, is shut down and launched again when needed; and a
worker starting after a crash runs again only the invocations it had claimed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedlake import Workspace
from embedlake.events import Event
from embedlake.functions import Functions, on_event
from embedlake.functions.context import Context
from embedlake.runtime import Runtime

ENV = {
    "EMBEDLAKE_RUNTIME__RETRY_BASE_SECONDS": "0.05",
    "EMBEDLAKE_RUNTIME__WATCH": "false",
    "EMBEDLAKE_RUNTIME__IDLE_SECONDS": "1",  # DBOS shut down a second after its work
}

direct = Functions()
_lock = threading.Lock()
_seen: dict[str, int] = {}


def _count(key: str) -> int:
    with _lock:
        _seen[key] = _seen.get(key, 0) + 1
        return _seen[key]


@direct.function(on=on_event("test.plain"), concurrency=4, retries=0)
def plain(event: Event, ctx: Context) -> None:
    _count(f"plain {event.subject}")


@direct.function(on=on_event("test.flaky"), retries=2)
def flaky(event: Event, ctx: Context) -> None:
    if _count(f"flaky {event.subject}") == 1:
        raise RuntimeError("the first try fails")


@direct.function(on=on_event("test.long"), retries=0)
def undeclared_long_job(event: Event, ctx: Context) -> int:
    _count(f"before the step {event.subject}")
    try:
        result: int = ctx.step("the step", _count, f"step {event.subject}")
    except Exception:  # a handler may guard its steps: the hand-over must get through
        _count(f"step failed {event.subject}")
        raise
    return result


@direct.function(on=on_event("test.durable"), retries=0, durable=True)
def declared(event: Event, ctx: Context) -> None:
    _count(f"declared {event.subject}")


@pytest.fixture
def running(tmp_path: Path, backend: dict[str, str]) -> Iterator[tuple[Workspace, Runtime]]:
    """A runtime of these functions over a fresh workspace on each database engine."""
    _seen.clear()
    with (
        Workspace.init(tmp_path / "ws", environ={**ENV, **backend}) as ws,
        Runtime(ws, direct) as runtime,
    ):
        yield ws, runtime


def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the runtime never got there"
        time.sleep(0.05)


def test_a_short_invocation_runs_and_is_recorded_without_dbos(
    running: tuple[Workspace, Runtime],
) -> None:
    ws, runtime = running
    for n in range(10):
        ws.catalog.events.add(Event("test.plain", f"p{n}"))
    assert runtime.wait_idle(60)
    runs = ws.catalog.events.invocations(function="plain")
    assert sorted((r.status, r.attempts) for r in runs) == [("succeeded", 1)] * 10
    assert all(r.seconds is not None and r.seconds >= 0 for r in runs)
    assert all(_seen[f"plain p{n}"] == 1 for n in range(10))
    assert not runtime.workflows.up  # nothing durable: DBOS never launched


def test_a_failed_first_attempt_is_retried_as_a_workflow(
    running: tuple[Workspace, Runtime],
) -> None:
    ws, runtime = running
    ws.catalog.events.add(Event("test.flaky", "f"))
    assert runtime.wait_idle(60)
    [run] = ws.catalog.events.invocations(function="flaky")
    assert (run.status, run.attempts, run.error) == ("succeeded", 2, None)
    assert _seen["flaky f"] == 2


def test_a_function_that_checkpoints_unannounced_is_handed_to_a_workflow(
    running: tuple[Workspace, Runtime],
) -> None:
    """Stopped at its first step and run again as a workflow: what came before the step runs
    twice, the step once; the next invocation of that function starts as a workflow."""
    ws, runtime = running
    ws.catalog.events.add(Event("test.long", "a"))
    assert runtime.wait_idle(60)
    ws.catalog.events.add(Event("test.long", "b"))
    assert runtime.wait_idle(60)
    runs = ws.catalog.events.invocations(function="undeclared-long-job")
    assert sorted((r.status, r.attempts) for r in runs) == [("succeeded", 1)] * 2
    assert (_seen["before the step a"], _seen["step a"]) == (2, 1)
    assert (_seen["before the step b"], _seen["step b"]) == (1, 1)
    assert not any(key.startswith("step failed") for key in _seen)  # not caught as an error


def test_dbos_is_shut_down_after_its_work_and_launched_again_for_more(
    running: tuple[Workspace, Runtime],
) -> None:
    ws, runtime = running
    ws.catalog.events.add(Event("test.durable", "one"))
    _until(lambda: _seen.get("declared one") == 1)
    assert runtime.workflows.up
    _until(lambda: not runtime.workflows.up)  # idle_seconds (1 s) after it ended
    ws.catalog.events.add(Event("test.durable", "two"))
    assert runtime.wait_idle(60)
    runs = ws.catalog.events.invocations(function="declared")
    assert sorted(r.status for r in runs) == ["succeeded", "succeeded"]
    assert _seen["declared two"] == 1


def test_a_worker_starting_again_runs_only_what_it_had_claimed(tmp_path: Path) -> None:
    """A crash leaves direct attempts running in the catalog, unknown to DBOS: the worker that
    claimed them runs them again at its start; another worker's are not its to run."""
    _seen.clear()
    env = {**ENV, "EMBEDLAKE_RUNTIME__EXECUTOR_ID": "worker-a"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        events = ws.catalog.events
        for subject in ("mine", "theirs"):
            events.add(Event("test.plain", subject, id=subject))
            events.invocation_queued(f"{subject}:plain", "plain", subject)
        # claimed before a crash: one by this worker, one by another that is still alive
        events.claim_queued({"plain": 1}, "worker-a")
        events.claim_queued({"plain": 1}, "worker-b")
        assert {i for i, _, _ in events.unfinished("worker-a")} == {"mine:plain"}
        with Runtime(ws, direct) as runtime:
            _until(lambda: events.invocation("mine:plain").status == "succeeded")
            time.sleep(0.5)
            assert events.invocation("theirs:plain").status == "running"
            assert _seen == {"plain mine": 1}
            # launched to ask DBOS what it knew of them (in the background: on a loaded machine
            # it can take longer than the sleep above; the full suite once saw it not up yet)
            _until(lambda: runtime.workflows.up)
