"""Lambda entry points: one per registered function (``ingest``, ``embed_new``, …), ``dispatch``
and ``api``. Each is ``NAME(event, context) -> dict`` and calls the same handler as the local runtime.

An entry point turns the AWS payload (S3 notification, directly or through SQS or SNS, EventBridge,
a schedule, dispatch's own invoke) into outbox events, records each with its invocation and runs it
(:mod:`embedlake.aws.invocations`). ``ctx.emit`` writes to the catalog's outbox; ``dispatch`` (on a
schedule, and poked after a function emitted) routes those events (:mod:`embedlake.aws.dispatch`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from embedlake.aws.api import Api
from embedlake.aws.container import container, shutdown
from embedlake.aws.dispatch import invoke_or_inline, poke, route
from embedlake.aws.invocations import function_spec, run
from embedlake.aws.payloads import ObjectNotice, Tick, messages, units
from embedlake.errors import InputError
from embedlake.events import OBJECT_REMOVED, Event
from embedlake.functions import FunctionSpec
from embedlake.runtime.core import created_event, forget_object, record, schedule_event
from embedlake.workspace import Workspace

__all__ = [
    "api",
    "build_release",
    "dispatch",
    "embed_new",
    "handle",
    "ingest",
    "register_model",
    "retrain_on_growth",
    "shutdown",
]
log = logging.getLogger(__name__)
LambdaHandler = Callable[[dict[str, Any], object], dict[str, Any]]


def entry_point(function: str) -> LambdaHandler:
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        return handle(function, event, context)

    handler.__name__ = handler.__qualname__ = function.replace("-", "_")
    handler.__doc__ = f"The Lambda entry point of function {function!r}."
    return handler


ingest = entry_point("ingest")
embed_new = entry_point("embed-new")
register_model = entry_point("register-model")
build_release = entry_point("build-release")
retrain_on_growth = entry_point("retrain-on-growth")


def __getattr__(name: str) -> LambdaHandler:
    """Entry points of functions that settings add (``retrain_scheduled``, ``runtime.modules``):
    known only once the workspace is open, so the name is checked when the entry point runs."""
    if re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return entry_point(name.replace("_", "-"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def handle(function: str, payload: Any, context: object = None) -> dict[str, Any]:
    box = container()
    spec = function_spec(box, function)
    batch, parts = units(payload)
    failed: list[str] = []
    done: list[dict[str, Any]] = []
    for item_id, raw in parts:
        try:
            for message in messages(raw, box.lake):
                event = _event(box.ws, spec, message)
                if event is not None and spec.matches(event):
                    done.append(run(box, spec, event, context))
        except Exception:
            if item_id is None:
                raise  # Lambda retries the whole invocation, then its on-failure destination
            log.exception("SQS message %s failed; only it is delivered again", item_id)
            failed.append(item_id)
    if any(d.get("emitted") for d in done):
        poke(box)
    if batch:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
    return {"invocations": done}


def _event(ws: Workspace, spec: FunctionSpec, message: ObjectNotice | Tick | Event) -> Event | None:
    """The outbox event a message stands for, recorded with this function's invocation in one
    transaction (so a dispatcher never sees the event without it); None: nothing to run."""
    if isinstance(message, ObjectNotice):
        event = _noticed(ws, message)
    elif isinstance(message, Tick):
        cron = next((t.cron for t in spec.triggers if t.cron is not None), None)
        if cron is None:
            raise InputError(f"function {spec.name!r} has no schedule trigger")
        event = schedule_event(spec.name, cron, message.time)
    else:
        event = message
    if event is not None:
        record(ws, event, [spec] if spec.matches(event) else [])
    return event


def _noticed(ws: Workspace, notice: ObjectNotice) -> Event | None:
    """The ``object.created`` event of what the store holds now; None for a removal (recorded
    here, routed by dispatch from the outbox) or an object gone already."""
    if notice.type == OBJECT_REMOVED:
        if not ws.lake.exists(notice.key):  # notifications come late: the store decides
            forget_object(ws, notice.key)
        return None
    event = created_event(ws, notice.key)
    if event is None:
        log.info("%s is gone already", notice.key)
    return event


def dispatch(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point of the dispatcher (payload: a scheduled event, or anything)."""
    return route(container(), invoke_or_inline, context)


def api(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point of the HTTP API (API Gateway v2 HTTP, Function URL)."""
    box = container()
    with box.lock:
        if box.api is None:
            box.api = Api(box.ws)
    return box.api.handler(event, context)  # type: ignore[arg-type]
