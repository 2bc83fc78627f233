"""Durable invocations on DBOS workflows.

- ``invoke`` (one per event and function, id ``<event id>:<function>``, started by the runtime's
  dispatcher when the function has a free slot, so its concurrency is the function's, for a
  function that checkpoints or after a direct first attempt failed, see runtime/direct.py): runs
  attempts, sleeps durably between them with exponential back-off and full jitter, and
  dead-letters the invocation after its last attempt, or after its first when the failure is
  permanent (:func:`~embedlake.runtime.core.permanent`).
- ``attempt`` (a child workflow with the function's timeout): runs the handler. Its steps and
  fan-outs are checkpoints: after a crash DBOS replays it, returning finished steps' results.
- ``map_item`` (a fan-out task, a child workflow): runs ``fn(ws, item)`` on the engine, whose pool
  bounds how many run at once.

Each invocation writes few checkpoints: the dispatcher's claim records it running at attempt 1,
so ``invoke`` records only the attempts after the first, and a successful attempt records its
own success (measured: a child workflow costs ~3.5 ms of CPU, a step ~2 ms; see
docs/decisions/0017-runtime-wake-on-work.md).

DBOS registers workflows globally per process, so they find the running runtime through
:func:`active`: whatever :class:`ActiveRuntime` describes (the service's ``Runtime``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from dbos import DBOS, SetWorkflowID, SetWorkflowTimeout, StepOptions
from dbos import error as dbos_errors
from dbos._registrations import get_func_info  # see set_recovery_limit

from embedlake.errors import ConfigError
from embedlake.events import Event
from embedlake.functions import Functions
from embedlake.functions.context import Context
from embedlake.runtime.core import describe, finish, permanent, timed_out
from embedlake.runtime.engines import Engine, task_ref
from embedlake.runtime.logs import invocation_ids
from embedlake.steps import Task
from embedlake.workspace import Workspace

R = TypeVar("R")
log = logging.getLogger(__name__)

INVOKE = "embedlake.invoke"
MAX_RECOVERY_ATTEMPTS = 10  # the default of runtime.max_recovery_attempts (set_recovery_limit)


class ActiveRuntime(Protocol):
    """What the workflows need of the runtime that runs them."""

    ws: Workspace
    functions: Functions
    poll_interval: float
    retry_base: float
    engine: Engine | None

    def finished(self, function: str, run_id: str) -> None: ...


_runtime: ActiveRuntime | None = None


def activate(runtime: ActiveRuntime | None) -> None:
    global _runtime
    _runtime = runtime


def active() -> ActiveRuntime:
    if _runtime is None:
        raise ConfigError("no embedlake runtime is running in this process")
    return _runtime


def set_recovery_limit(attempts: int) -> None:
    """Crashes one invocation (and each of its attempts and fan-out items) may survive before DBOS
    gives up on it: ``runtime.max_recovery_attempts``.

    DBOS takes the limit in its ``@DBOS.workflow`` decorator, at import time, and reads it from the
    function's registration info when it recovers a workflow. DBOS 3 has no public way to change it
    later, so the runtime sets that info before it launches DBOS (dbos is pinned below 4 for this).
    """
    for workflow in (invoke, run_attempt, map_item):
        info = get_func_info(workflow)
        if info is None:
            raise ConfigError(f"{workflow.__name__} is not a registered DBOS workflow")
        info.max_recovery_attempts = attempts


def backoff(base: float, attempt: int) -> float:
    """Full jitter: uniform in [0, base·2^(attempt-1)], at least a tenth of the base."""
    return max(base / 10, random.uniform(0, base * 2 ** (attempt - 1)))


def _update(run_id: str, **values: Any) -> None:
    """Set fields of the invocation's record. Absolute values, not the core's ``claim``
    (attempts + 1): a DBOS step that crashed before its checkpoint runs again on recovery."""
    active().ws.catalog.events.invocation_update(run_id, **values)


def _finish(run_id: str, status: str, error: str | None) -> None:
    finish(active().ws, run_id, status, error)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(
        exc, dbos_errors.DBOSAwaitedWorkflowCancelledError | dbos_errors.DBOSWorkflowCancelledError
    ):
        return timed_out(timeout)
    return describe(exc)


@DBOS.workflow(name=INVOKE, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
def invoke(function: str, event: dict[str, Any], failed: int = 0, error: str = "") -> str:
    """The invocation's attempts after the ``failed`` ones (the direct first attempt hands over
    its failure as ``failed`` 1 and its ``error``; runtime/direct.py)."""
    run_id = DBOS.workflow_id
    assert run_id is not None
    try:
        return _invoke(function, event, run_id, failed, error)
    finally:
        active().finished(function, run_id)


def _invoke(function: str, event: dict[str, Any], run_id: str, failed: int, error: str) -> str:
    runtime = active()
    spec = runtime.functions[function]
    for attempt in range(failed + 1, spec.retries + 2):
        if attempt > 1:  # the one before failed (the claim recorded the first attempt)
            delay = DBOS.run_step(
                {"name": f"back-off {attempt - 1}"}, backoff, runtime.retry_base, attempt - 1
            )
            DBOS.run_step(
                {"name": f"failed {attempt - 1}"}, _update, run_id, error=error, status="retrying"
            )
            DBOS.sleep(delay)
            DBOS.run_step({"name": f"attempt {attempt}"}, _update, run_id, attempts=attempt)
        with SetWorkflowID(f"{run_id}#{attempt}"), SetWorkflowTimeout(spec.timeout):
            handle = DBOS.start_workflow(run_attempt, function, event, run_id, attempt)
        try:
            handle.get_result(polling_interval_sec=runtime.poll_interval)
        except Exception as exc:
            error = _describe(exc, spec.timeout)
            if permanent(exc):  # it would fail the same way again: no retry
                break
        else:
            return "succeeded"  # recorded by the attempt itself
    DBOS.run_step({"name": "dead-lettered"}, _finish, run_id, "dead", error)
    return "dead"


@DBOS.workflow(name="embedlake.attempt", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
def run_attempt(function: str, event: dict[str, Any], run_id: str, attempt: int) -> None:
    runtime = active()
    spec = runtime.functions[function]
    event_id = str(event["id"])
    ctx = Context(
        ws=runtime.ws,
        function_name=function,
        request_id=run_id,
        timeout=spec.timeout,
        attempt=attempt,
        steps=DurableSteps(),
    )
    with invocation_ids(function=function, invocation=run_id, event=event_id):
        log.info("attempt %d", attempt)
        spec.handler(Event.from_json(event), ctx)
    # here, not as a step of ``invoke``: a step is a checkpoint more per invocation, and the
    # attempt's own completion is already one (a crash before it runs the attempt again)
    _finish(run_id, "succeeded", None)


@DBOS.workflow(name="embedlake.map_item", max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
def map_item(ref: str, item: Any) -> Any:
    options: StepOptions = {"name": ref, "retries_allowed": True, "max_attempts": 3}
    return DBOS.run_step(options, _run_task, ref, item)


def _run_task(ref: str, item: Any) -> Any:
    engine = active().engine
    if engine is None:
        raise ConfigError("the runtime has no compute engine")
    return engine.run(ref, item)


class DurableSteps:
    """Steps as DBOS steps; a fan-out as one queued workflow per item, joined in order."""

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        result: R = DBOS.run_step({"name": name}, fn, *args)
        return result

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        ref = task_ref(fn)
        parent = DBOS.workflow_id
        handles = []
        for number, item in enumerate(items):
            with SetWorkflowID(f"{parent}:{name}:{number}"):
                handles.append(DBOS.start_workflow(map_item, ref, item))
        poll = active().poll_interval
        return [h.get_result(polling_interval_sec=poll) for h in handles]
