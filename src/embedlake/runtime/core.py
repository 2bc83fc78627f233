"""The event core: what the local runtime and the AWS handlers both do with events.

    an object the lake has ──record_object──▶ object.created ─┐
    a schedule's tick ──schedule_event──▶ schedule ───────────┼──▶ outbox ──route──▶ one queued
    a handler's ctx.emit ─────────────────────────────────────┘    invocation per (event, function)
                                                                    ──start──▶ claim … finish

(The routing itself is runtime/router.py's, shared by the local dispatcher and the AWS one.)

One core, so that an event id, an invocation id and an invocation's record mean the same whoever
runs it: ``embedlake runs`` lists local and Lambda invocations alike, and the writer, a scan and a
bucket notification noticing one object raise one event. The SQL is the catalog's
(:class:`~embedlake.catalog.outbox.Events`); how an invocation starts (a DBOS queue, a Lambda
invoke, a Batch job) is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE, Event
from embedlake.functions import FunctionSpec
from embedlake.lake import created_event_id
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

CURSOR = "dispatch.cursor"  # runtime_state: the outbox sequence number routed last
MAX_ERROR = 4000  # characters of an error the invocation log keeps


def invocation_id(event: Event, spec: FunctionSpec) -> str:
    """One invocation per (event, function): a repeated delivery finds the same one."""
    return f"{event.id}:{spec.name}"


# -- events -------------------------------------------------------------------------------------
def created_event(ws: Workspace, key: str) -> Event | None:
    """The ``object.created`` event of what the lake holds at ``key`` now (None: nothing). Its id
    derives from the key and content, the id the writer, scans and notifications all give it."""
    try:
        info = ws.lake.info(key)
    except NotFound:
        return None
    data = {"size": info.size, "etag": info.etag}
    return Event(OBJECT_CREATED, key, data, id=created_event_id(key, info.etag))


def schedule_event(function: str, cron: str, due: datetime) -> Event:
    """The tick of ``function``'s schedule due at ``due``: one id per tick, whoever raises it."""
    stamp = due.isoformat()
    data = {"function": function, "due": stamp}
    return Event(SCHEDULE, cron, data, id=f"schedule:{function}:{stamp}")


def record(ws: Workspace, event: Event, specs: Sequence[FunctionSpec] = ()) -> None:
    """Put ``event`` in the outbox (an ``object.created`` also marks its object seen) with the
    queued invocations of ``specs``, in one transaction: a dispatcher never sees the event
    without them. Idempotent: a known event id or invocation is left as it is."""
    events = ws.catalog.events
    with ws.catalog.begin():
        events.add(event)
        if event.type == OBJECT_CREATED:
            events.mark_seen(event.subject, event.data["etag"], event.data["size"])
        for spec in specs:
            queue_invocation(ws, event, spec)


def record_object(ws: Workspace, key: str) -> bool:
    """Raise ``object.created`` for ``key`` unless it was seen with the same content (True: raised).
    An object the store cannot describe now is left to the next scan."""
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # a file name not in UTF-8: no key, event or catalog row
            log.warning("skipped %r: its name is not valid UTF-8 (rename the file)", key)
            return False
    try:
        event = created_event(ws, key)
    except Exception:
        return False
    if event is None or ws.catalog.events.seen(key).get(key, ("", 0))[0] == event.data["etag"]:
        return False
    record(ws, event)
    log.info("found %s", key)
    return True


def forget_object(ws: Workspace, key: str) -> bool:
    """Raise ``object.removed`` for ``key`` unless it is not (or no longer) known as present.

    Checked inside the transaction: a scan and a bucket notification noticing the same removal
    raise one event.
    """
    events = ws.catalog.events
    with ws.catalog.begin():
        known = events.seen(key).get(key)
        if known is None:
            return False
        events.add(Event(OBJECT_REMOVED, key, {"size": known[1], "etag": known[0]}))
        events.forget_seen(key)
    log.info("gone: %s", key)
    return True


# -- invocations --------------------------------------------------------------------------------
def permanent(exc: BaseException) -> bool:
    """Whether a handler's failure would fail again however often it ran: the input is wrong
    (``InputError``, a rejected record, a batch over a limit) or the settings are
    (``ConfigError``). Such an invocation is dead-lettered after its first attempt, with the
    reason; anything else (a store timing out, a crash, a timeout) is retried."""
    return isinstance(exc, InputError | ConfigError)


def describe(exc: BaseException) -> str:
    """How an invocation's record names a failure: the exception's type and message, cut."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def timed_out(timeout: float) -> str:
    """How an invocation's record names an attempt that ran past the function's timeout."""
    return f"TimeoutError: the attempt ran past the function's timeout of {timeout:g} s"


def queue_invocation(ws: Workspace, event: Event, spec: FunctionSpec) -> bool:
    """Record ``spec``'s invocation for ``event`` as queued; False when it exists already."""
    return ws.catalog.events.invocation_queued(invocation_id(event, spec), spec.name, event.id)


def claim(ws: Workspace, run_id: str, stale_after: float) -> int | None:
    """Mark the invocation running, if nobody runs it (or whoever did is ``stale_after`` seconds
    gone); its attempt number, or None when it finished or runs elsewhere."""
    return ws.catalog.events.claim_invocation(run_id, stale_after)


def finish(ws: Workspace, run_id: str, status: str, error: str | None) -> None:
    """Record the invocation's end: ``status``, the head of ``error``, when and how long."""
    ws.catalog.events.finish_invocation(
        run_id, status, None if error is None else error[:MAX_ERROR]
    )
