"""Routing the catalog's outbox on AWS: ``route`` gives each new (event, matching function) an
invocation row, then starts it: an asynchronous ``lambda.invoke`` of the function's own Lambda, a
Batch job for a heavy function where a job queue is configured, or a run in this process where
neither is deployed for it. Failed invocations due for a retry, and queued ones nobody started,
are started again by the sweep."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from embedlake.aws import HEAVY, batch
from embedlake.aws.container import Container
from embedlake.aws.environment import function_env
from embedlake.aws.invocations import run, seconds_left
from embedlake.aws.payloads import invoke_payload
from embedlake.events import Event
from embedlake.functions import FunctionSpec
from embedlake.runtime.core import invocation_id
from embedlake.runtime.router import Router

log = logging.getLogger(__name__)
LOST_AFTER = timedelta(minutes=15)  # a queued invocation nobody started: invoked again
_DISPATCH_MARGIN_MS = 30_000  # dispatch stops routing this long before Lambda stops it


class Invoker(Protocol):
    """How dispatch starts an invocation (recorded already as queued)."""

    def __call__(self, box: Container, spec: FunctionSpec, event: Event) -> None: ...


def inline(box: Container, spec: FunctionSpec, event: Event) -> None:
    """Run it in this process, now."""
    run(box, spec, event)


def invoke_or_inline(box: Container, spec: FunctionSpec, event: Event) -> None:
    """A heavy function as a Batch job (where ``EMBEDLAKE_AWS_BATCH_JOB_QUEUE`` is set and it
    does not go to Ray), else the function's own Lambda, invoked asynchronously
    (``EMBEDLAKE_AWS_FUNCTION_<NAME>``), else inline where none is deployed for it."""
    if spec.name in HEAVY and box.ws.settings.runtime.engine != "ray" and batch.configured():
        batch.submit(box, spec, event)
        return
    target = os.environ.get(function_env(spec.name))
    if not target:
        inline(box, spec, event)
        return
    box.client("lambda").invoke(
        FunctionName=target,
        InvocationType="Event",
        Payload=json.dumps(invoke_payload(event)).encode(),
    )


def poke(box: Container) -> None:
    """After a function emitted: start a dispatch now rather than at its next schedule."""
    target = os.environ.get(function_env("dispatch"))
    if target:
        box.client("lambda").invoke(FunctionName=target, InvocationType="Event", Payload=b"{}")


def route(box: Container, invoker: Invoker, context: object = None) -> dict[str, Any]:
    """Give each new (outbox event, matching function) an invocation row, then start it; invoke
    again the failed invocations due for a retry and the queued ones nobody started.

    The rows of a batch commit before their invokes: two dispatchers at once, or one that
    crashed half-way, never start one invocation twice (the row exists), and one lost between
    row and invoke is found by the sweep."""

    started: list[str] = []

    def start(spec: FunctionSpec, event: Event, run_id: str) -> None:
        started.append(run_id)
        _start(box, invoker, spec, event)

    # one call of this Lambda is one pass: the router keeps the outbox numbers it waits for (an
    # event committed late, runtime/router.py) in the catalog, for the next call
    router = Router(box.ws, box.functions, limit=100, persist=True, start=start)
    seen = 0
    while seconds_left(context) * 1000 > _DISPATCH_MARGIN_MS:
        routed = router.route(max_batches=1)
        if not routed:
            break
        seen += routed
    return {"events": seen, "invoked": len(started), "retried": _sweep(box, invoker)}


def _sweep(box: Container, invoker: Invoker) -> int:
    events, now = box.ws.catalog.events, datetime.now(UTC)
    base = box.ws.settings.runtime.retry_base_seconds
    again, names = 0, {s.name for s in box.functions}
    for inv in [*events.invocations(status="retrying"), *events.invocations(status="queued")]:
        since = inv.finished_at or inv.enqueued_at
        wait = LOST_AFTER if inv.status == "queued" else timedelta(seconds=base * 2**inv.attempts)
        if now - since < wait or inv.function not in names:
            continue
        # queued again, from now: the next sweep waits for this invoke instead of repeating it
        events.invocation_update(inv.id, status="queued", enqueued_at=now, finished_at=None)
        again += _start(box, invoker, box.functions[inv.function], events.get(inv.event_id))
    return again


def _start(box: Container, invoker: Invoker, spec: FunctionSpec, event: Event) -> int:
    try:
        invoker(box, spec, event)
    except Exception:  # recorded on the invocation; dispatch goes on with the others
        log.exception("invocation %s failed", invocation_id(event, spec))
    return 1
