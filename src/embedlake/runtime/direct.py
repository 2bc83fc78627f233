"""First attempts run directly: a handler on a thread, its end one catalog transaction.

Most invocations are short and succeed at once (an ingest, a "skipped" check, an index update).
Running each as DBOS's ``invoke`` workflow and ``attempt`` child cost a no-op invocation
11.0 ms of CPU on PostgreSQL where running it here costs 2.5 ms, claim and finish included
(bench/runtime.py; docs/decisions/0028-direct-first-attempts.md). The catalog's record already makes a first
attempt durable: the claim marks it running and names this worker, so a crash leaves it running
and the worker's next start runs it again (``Runtime._adopt_unstarted``), at least once, as every
attempt is run. What DBOS adds is needed only by what comes after a first attempt:

- a failed attempt with retries left is handed to ``invoke`` from its second attempt (durable
  back-off sleeps, then attempts as child workflows with the function's timeout);
- a handler that checkpoints (``ctx.step``, ``ctx.map``) is a long job: a function declared
  ``durable=True`` goes to ``invoke`` at once; one that was not is stopped at its first step and
  handed to ``invoke`` from its first attempt (what it did before that step runs again, once: a
  handler is idempotent) and goes to ``invoke`` from then on in this process.

The first attempt's timeout is the function's: past it the attempt counts as failed with a
``TimeoutError`` (the thread cannot be stopped and runs on, as a cancelled DBOS attempt does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, Protocol

from embedlake.events import Event
from embedlake.functions import Functions
from embedlake.functions.context import Context
from embedlake.runtime.core import describe, permanent, timed_out
from embedlake.runtime.logs import invocation_ids
from embedlake.runtime.pool import ElasticPool
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


class Checkpointed(BaseException):
    """A handler asked for a checkpoint on a direct attempt: it is a long job for ``invoke``.
    A BaseException, as GeneratorExit is: a handler's ``except Exception`` must not catch it."""


class NoCheckpoints:
    """The steps of a direct attempt: any step or fan-out stops it for a durable one."""

    def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        raise Checkpointed(name)

    def map(self, name: str, fn: Any, items: Sequence[Any]) -> list[Any]:
        raise Checkpointed(name)


class Owner(Protocol):
    """What a direct attempt needs of the runtime that runs it."""

    ws: Workspace
    functions: Functions

    def finished(self, function: str, run_id: str) -> None: ...
    def durably(
        self, function: str, event: Event, run_id: str, failed: int, error: str
    ) -> None: ...


class DirectAttempts:
    """First attempts on threads: one thread waits on each (its timeout), one runs the handler.
    The handlers' pool has no fixed bound: an attempt past its timeout keeps its thread."""

    def __init__(self, owner: Owner, slots: int) -> None:
        self._owner = owner
        self._waiters = ElasticPool(slots, idle_seconds=30.0, name="embedlake-invocation")
        self._handlers = ElasticPool(10_000, idle_seconds=30.0, name="embedlake-handler")

    def start(self, function: str, event: Event, run_id: str, started: datetime | None) -> None:
        self._waiters.submit(lambda: self._run(function, event, run_id, started))

    def close(self) -> None:
        self._waiters.shutdown()
        self._handlers.shutdown()

    def _run(self, function: str, event: Event, run_id: str, started: datetime | None) -> None:
        owner = self._owner
        spec = owner.functions[function]
        ctx = Context(
            ws=owner.ws,
            function_name=function,
            request_id=run_id,
            timeout=spec.timeout,
            attempt=1,
            steps=NoCheckpoints(),
        )

        def handle() -> None:
            with invocation_ids(function=function, invocation=run_id, event=event.id):
                log.info("attempt 1")
                spec.handler(event, ctx)

        handed_over = False
        try:
            try:
                self._handlers.submit(handle).result(timeout=spec.timeout)
            except Checkpointed as step:
                log.info("%s checkpoints (step %s): run as a durable workflow", function, step)
                owner.durably(function, event, run_id, 0, "")
                handed_over = True
                return
            except FutureTimeout:
                error, retry = timed_out(spec.timeout), spec.retries > 0
            except Exception as exc:
                error, retry = describe(exc), spec.retries > 0 and not permanent(exc)
            else:
                owner.ws.catalog.events.finish_invocation(run_id, "succeeded", None, started)
                return
            if retry:
                owner.durably(function, event, run_id, 1, error)
                handed_over = True
            else:
                owner.ws.catalog.events.finish_invocation(run_id, "dead", error, started)
        except Exception:
            # the catalog or DBOS unreachable: the invocation stays running in the catalog, and
            # this worker's next start runs it again
            log.exception("invocation %s could not be recorded", run_id)
        finally:
            if not handed_over:
                owner.finished(function, run_id)
