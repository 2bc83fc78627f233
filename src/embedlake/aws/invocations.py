"""Running one function for one event, recorded as an invocation, on Lambda or in a Batch job.

An invocation row per (event, function), id ``<event id>:<function>`` as in the local runtime (both
record it through :mod:`embedlake.runtime.core`), so ``embedlake runs`` lists Lambda's invocations
too. It is claimed atomically before the handler runs: a repeated delivery of a finished invocation
is a no-op, one still running elsewhere fails (and AWS delivers it again later), one that failed
runs again, up to ``retries`` + 1 attempts. One that failed on its input or settings (a permanent
failure, :func:`~embedlake.runtime.core.permanent`) is dead at once, with the reason, and the
delivery is answered (not raised), so that neither SQS nor Lambda delivers it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from embedlake.aws import HEAVY
from embedlake.aws.container import Container
from embedlake.errors import ConfigError, Conflict
from embedlake.events import Event
from embedlake.functions import FunctionSpec
from embedlake.functions.context import Context
from embedlake.runtime.core import (
    MAX_ERROR,
    claim,
    finish,
    invocation_id,
    permanent,
    queue_invocation,
)
from embedlake.runtime.engines import Engine, open_engine, task_ref
from embedlake.runtime.logs import invocation_ids
from embedlake.steps import DirectSteps, Steps, Task

log = logging.getLogger(__name__)
R = TypeVar("R")

LAMBDA_MAX_SECONDS = 900.0


class InFlight(Conflict):
    """The invocation runs elsewhere now; the delivery should come again later."""


def function_spec(box: Container, function: str) -> FunctionSpec:
    try:
        return box.functions[function]
    except KeyError:
        known = ", ".join(sorted(s.name for s in box.functions))
        raise ConfigError(f"no function {function!r} is registered (known: {known})") from None


def run(box: Container, spec: FunctionSpec, event: Event, context: object = None) -> dict[str, Any]:
    """Run ``spec``'s handler for ``event`` once, recorded as an invocation."""
    events, run_id = box.ws.catalog.events, invocation_id(event, spec)
    queue_invocation(box.ws, event, spec)  # no-op when recorded already
    limit = min(spec.timeout, seconds_left(context)) if box.limited else spec.timeout
    attempt = claim(box.ws, run_id, limit + 60)  # a claim older than this: its runner is dead
    if attempt is None:
        current = events.invocation(run_id)
        if current.status == "succeeded":
            return {"invocation": run_id, "status": "duplicate"}
        raise InFlight(f"invocation {run_id} is {current.status} elsewhere; deliver it later")
    with invocation_ids(function=spec.name, invocation=run_id, event=event.id):
        try:
            _check_can_run(box, spec)
            ctx = Context(
                ws=box.ws,
                function_name=spec.name,
                request_id=run_id,
                timeout=limit,
                attempt=attempt,
                steps=_steps(box),
            )
            result = spec.handler(event, ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if permanent(exc):  # bad input or settings: dead now, and not raised, so that
                finish(box.ws, run_id, "dead", error)  # no SQS or Lambda retry runs it again
                log.warning("invocation %s is dead-lettered (permanent): %s", run_id, error)
                return {"invocation": run_id, "status": "dead", "error": error[:MAX_ERROR]}
            finish(box.ws, run_id, "dead" if attempt > spec.retries else "retrying", error)
            raise
    finish(box.ws, run_id, "succeeded", None)
    out = {"invocation": run_id, "status": "succeeded", "emitted": ctx.emitted, "result": result}
    return dict(json.loads(json.dumps(out, default=str)))  # Lambda sends it back as JSON


def _check_can_run(box: Container, spec: FunctionSpec) -> None:
    if box.limited and spec.name in HEAVY and box.ws.settings.runtime.engine != "ray":
        raise ConfigError(
            f"function {spec.name!r} embeds a corpus shard by shard, which Lambda cannot do (no "
            'GPU, 15 minutes at most): on Lambda it needs runtime.engine = "ray" '
            "(EMBEDLAKE_RUNTIME__ENGINE=ray, EMBEDLAKE_RUNTIME__RAY_ADDRESS=ray://head:10001) so "
            "that the shards run on a Ray cluster; or a Batch job queue "
            "(the template's HeavyJobs, EMBEDLAKE_AWS_BATCH_JOB_QUEUE) that dispatch submits it to"
        )


def seconds_left(context: object) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else LAMBDA_MAX_SECONDS


def _steps(box: Container) -> Steps:
    if box.ws.settings.runtime.engine != "ray":
        return DirectSteps(box.ws)
    with box.lock:
        if box.engine is None:
            box.engine = open_engine(box.ws.settings, box.ws)
    return EngineSteps(box.engine, box.ws.settings.runtime.max_workers)


class EngineSteps:
    """Steps here; fan-out items on the compute engine (from Lambda: a Ray cluster), in parallel.
    Not durable: a retried invocation runs again, and shards already stored are not redone."""

    def __init__(self, engine: Engine, workers: int) -> None:
        self._engine, self._workers = engine, workers

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        return fn(*args)

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        ref = task_ref(fn)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="fan-out") as pool:
            return list(pool.map(lambda item: self._engine.run(ref, item), items))
