"""The runtime: DBOS launched over the workspace, a dispatcher thread and watcher threads."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions, SetWorkflowID

from embedlake.errors import InputError
from embedlake.events import Event
from embedlake.functions import Functions, FunctionSpec
from embedlake.functions.loading import load_functions
from embedlake.runtime.core import CURSOR, route, schedule_event
from embedlake.runtime.durable import (
    COMPUTE_QUEUE,
    INVOKE,
    activate,
    invoke,
    queue_for,
    queue_name,
    set_recovery_limit,
)
from embedlake.runtime.engines import Engine, open_engine
from embedlake.runtime.s3events import remote_watchers
from embedlake.runtime.watch import Loop, Watcher, scan
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["CURSOR", "Runtime", "describe", "redrive", "watchers"]


def _dbos_config(ws: Workspace) -> DBOSConfig:
    return {
        "name": "embedlake",
        "system_database_url": ws.settings.runtime_database_url(),
        "console_log_level": "WARNING",
        "run_migrations": True,
        "max_executor_threads": ws.settings.runtime.max_workers * 4,
        "executor_id": ws.settings.executor_id(),
    }


def watchers(ws: Workspace, prefixes: list[str]) -> list[Loop]:
    """The threads that notice objects others write: a folder watcher for a local lake; periodic
    scans and, when configured, the bucket's notifications for a remote one."""
    if ws.lake.local_path("x") is not None:
        return [Watcher(ws, prefixes)]
    return remote_watchers(ws, prefixes)


class Runtime:
    """Dispatcher + DBOS workers over one workspace; one per process (DBOS is per process)."""

    def __init__(self, ws: Workspace, functions: Functions | None = None) -> None:
        self.ws = ws
        self.functions = load_functions(ws, functions)
        settings = ws.settings.runtime
        self.poll_interval = settings.poll_interval
        self.retry_base = settings.retry_base_seconds
        self.engine: Engine | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watchers: list[Loop] = []

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Runtime:
        settings = self.ws.settings.runtime
        # built first: a watcher's configuration error (an sqs lake without a queue) stops the
        # start before anything is launched
        self._watchers = watchers(self.ws, settings.watch_prefixes) if settings.watch else []
        activate(self)
        set_recovery_limit(settings.max_recovery_attempts)
        self.engine = open_engine(self.ws.settings, self.ws)
        DBOS(config=_dbos_config(self.ws))
        DBOS.launch()  # recovers every invocation a crash interrupted
        for spec in self.functions:
            DBOS.register_queue(
                queue_name(spec.name),
                worker_concurrency=spec.concurrency,
                polling_interval_sec=self.poll_interval,
            )
        DBOS.register_queue(
            COMPUTE_QUEUE,
            worker_concurrency=self.ws.settings.runtime.max_workers,
            polling_interval_sec=self.poll_interval,
        )
        found = scan(self.ws, self.ws.settings.runtime.watch_prefixes)
        if found:
            log.info("start-up scan: %d objects changed while the runtime was down", found)
        for watcher in self._watchers:
            watcher.start()
        dispatcher = threading.Thread(
            target=self._dispatch_loop, name="embedlake-dispatcher", daemon=True
        )
        dispatcher.start()
        self._threads.append(dispatcher)
        return self

    def stop(self) -> None:
        self._stop.set()
        for watcher in self._watchers:
            watcher.stop()
        for watcher in self._watchers:
            if watcher.ident is not None:  # started
                watcher.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        DBOS.destroy(destroy_registry=False)
        if self.engine is not None:
            self.engine.close()
        activate(None)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        last_tick = datetime.now(UTC)
        while not self._stop.is_set():
            try:
                moved = self.dispatch_once()
                last_tick = self._schedules(last_tick)
            except Exception:
                log.exception("dispatcher error; retrying")
                moved = 0
            if not moved:
                self._stop.wait(self.poll_interval)

    def dispatch_once(self) -> int:
        """Enqueue an invocation for every (new event, matching function); returns events seen.

        The cursor moves after the enqueue: a crash in between re-enqueues the same invocation
        ids, which DBOS treats as the same workflows (at least once, never twice); so an
        invocation recorded before is enqueued again too.
        """
        return route(self.ws, self.functions, self._enqueue, start_recorded=True).events

    def _enqueue(self, spec: FunctionSpec, event: Event, run_id: str) -> None:
        """Start an invocation: DBOS's ``invoke`` workflow, id ``run_id``, on the function's queue."""
        with SetWorkflowID(run_id):
            queue_for(queue_name(spec.name)).enqueue(invoke, spec.name, event.to_json())

    def _schedules(self, last: datetime) -> datetime:
        """Raise the schedule events due since ``last``; the new ``last``."""
        now = datetime.now(UTC)
        for spec in self.functions:
            for trigger in spec.triggers:
                if trigger.cron is None:
                    continue
                due = croniter(trigger.cron, last).get_next(datetime)
                if due <= now:
                    self.ws.catalog.events.add(schedule_event(spec.name, trigger.cron, due))
        return now

    # -- waiting (tests, `embedlake up --until-idle`) --------------------------------------
    def idle(self) -> bool:
        events = self.ws.catalog.events
        if int(events.get_state(CURSOR, "0")) < events.latest_seq():
            return False
        busy = [
            i
            for s in ("queued", "running", "retrying")
            for i in events.invocations(status=s, limit=1)
        ]
        return not busy

    def wait_idle(self, timeout: float = 300.0, settle: float = 0.3) -> bool:
        """Block until no event waits and no invocation runs (twice in a row, ``settle`` apart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                time.sleep(settle)
                if self.idle():
                    return True
            time.sleep(self.poll_interval)
        return False


def redrive(ws: Workspace, run_id: str) -> str:
    """Enqueue a dead-lettered invocation again, as a new invocation; returns its id."""
    events = ws.catalog.events
    invocation = events.invocation(run_id)
    if invocation.status != "dead":
        raise InputError(f"invocation {run_id} is {invocation.status}, not dead-lettered")
    event = events.get(invocation.event_id)
    base = run_id.split("~", 1)[0]
    number = 1 + sum(
        1 for i in events.invocations(function=invocation.function) if i.id.startswith(base + "~")
    )
    new_id = f"{base}~{number}"
    events.invocation_queued(new_id, invocation.function, event.id)
    client = DBOSClient(system_database_url=ws.settings.runtime_database_url())
    try:
        options: EnqueueOptions = {
            "workflow_name": INVOKE,
            "queue_name": queue_name(invocation.function),
            "workflow_id": new_id,
        }
        client.enqueue(options, invocation.function, event.to_json())
    finally:
        client.destroy()
    return new_id


def describe(functions: Functions) -> list[dict[str, Any]]:
    return [
        {
            "function": s.name,
            "triggers": ", ".join(t.describe() for t in s.triggers),
            "concurrency": s.concurrency,
            "timeout": s.timeout,
            "retries": s.retries,
        }
        for s in functions
    ]
