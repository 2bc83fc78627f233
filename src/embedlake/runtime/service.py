"""The runtime: a dispatcher thread, watcher threads, and DBOS when durable work needs it.

The dispatcher sleeps until work is announced (catalog/wake.py) or a schedule is due: it routes
new outbox events to queued invocations, claims as many as each function has free slots, and
starts each: a first attempt directly on a thread (runtime/direct.py), a function that
checkpoints as a DBOS workflow under its invocation id (runtime/durable.py). A finished
invocation frees its slot and wakes the dispatcher. DBOS's own queues are not used: their runner
polls the database per queue (docs/decisions/0017-runtime-wake-on-work.md, 0028).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from embedlake.catalog.wake import Wake
from embedlake.errors import Conflict, InputError
from embedlake.events import Event
from embedlake.functions import Functions
from embedlake.functions.loading import load_functions
from embedlake.runtime.core import CURSOR, schedule_event
from embedlake.runtime.direct import DirectAttempts
from embedlake.runtime.durable import activate, set_recovery_limit
from embedlake.runtime.engines import Engine, open_engine
from embedlake.runtime.router import Router
from embedlake.runtime.s3events import remote_watchers
from embedlake.runtime.watch import Loop, Watcher, scan
from embedlake.runtime.workflows import Workflows
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["CURSOR", "Runtime", "describe", "redrive", "watchers"]

ROUTE_BATCH = 500  # outbox events routed per transaction


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
        self.wake_timeout = settings.wake_timeout
        self.retry_base = settings.retry_base_seconds
        self.engine: Engine | None = None
        self._stop = threading.Event()
        self._wake: Wake | None = None
        self._threads: list[threading.Thread] = []
        self._watchers: list[Loop] = []
        self._running: dict[str, set[str]] = defaultdict(set)  # function → invocations started here
        self._router = Router(ws, self.functions, limit=ROUTE_BATCH)
        self._lock = threading.Lock()
        self._durable = {spec.name for spec in self.functions if spec.durable}  # and learned
        self._executor = ws.settings.executor_id()
        self._direct = DirectAttempts(self, sum(spec.concurrency for spec in self.functions))
        self.workflows = Workflows(ws, self.functions)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Runtime:
        settings = self.ws.settings.runtime
        # built first: a watcher's configuration error (an sqs lake without a queue) stops the
        # start before anything is launched
        self._watchers = watchers(self.ws, settings.watch_prefixes) if settings.watch else []
        activate(self)
        set_recovery_limit(settings.max_recovery_attempts)
        self.engine = open_engine(self.ws.settings, self.ws)
        self._wake = Wake(self.ws.catalog.engine, watch_file=True)  # also other processes
        self._adopt_unstarted()
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
        if self._wake is not None:
            self._wake.set()
        for watcher in self._watchers:
            watcher.stop()
        for watcher in self._watchers:
            if watcher.ident is not None:  # started
                watcher.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._direct.close()
        self.workflows.close()
        if self._wake is not None:
            self._wake.close()
        if self.engine is not None:
            self.engine.close()
        activate(None)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def wake(self) -> Wake | None:
        """What the dispatcher sleeps on (None before the start)."""
        return self._wake

    def _adopt_unstarted(self) -> None:
        """Start again the invocations this worker claimed before a crash that DBOS does not
        know: direct first attempts, and workflows the crash kept from being recorded. One DBOS
        knows is its own to recover (launched for it, here, or by the worker that runs it)."""
        names = {spec.name for spec in self.functions}
        unfinished = self.ws.catalog.events.unfinished(self._executor)
        for run_id, function, event in self.workflows.recover(unfinished):
            if function in names:
                log.info("starting %s again: claimed before a crash", run_id)
                self._start(function, event, run_id)

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        assert self._wake is not None
        last_tick = datetime.now(UTC)
        while not self._stop.is_set():
            try:
                self.dispatch_once()
                last_tick = self._schedules(last_tick)
            except Exception:
                log.exception("dispatcher error; retrying")
                self._stop.wait(self.poll_interval)
                continue
            dbos_left = self.workflows.shut_if_idle()  # DBOS sleeps too once its work is done
            sleep = self._sleep_for(last_tick)
            self._wake.wait(sleep if dbos_left is None else min(sleep, dbos_left))

    def dispatch_once(self) -> int:
        """Route every new event to its queued invocations, then claim and start as many queued
        invocations as the functions have free slots; returns events routed.

        The routing commits before the claim and the claim before the start: a crash after
        the routing leaves invocations queued (claimed at the next start), one after a claim
        leaves them claimed and unstarted (``_adopt_unstarted``). A start that fails (DBOS's
        database unreachable) puts its invocation and the rest of the batch back in the queue.
        """
        total = self._router.route()
        with self._lock:
            slots = {s.name: s.concurrency - len(self._running[s.name]) for s in self.functions}
        started, claimed = self.ws.catalog.events.claim_queued(slots, self._executor)
        for n, (run_id, function, event) in enumerate(claimed):
            try:
                self._start(function, event, run_id, started)
            except Exception:
                for unstarted, name, _ in claimed[n:]:
                    self._unclaim(name, unstarted)
                raise
        return total

    def _unclaim(self, function: str, run_id: str) -> None:
        """An invocation claimed and not started: its slot freed, and queued again so that the
        next claim starts it (else it would wait, claimed, for the next restart). Starting it
        twice is harmless: DBOS runs one workflow per id."""
        with self._lock:
            self._running[function].discard(run_id)
        self.ws.catalog.events.invocation_update(
            run_id, status="queued", attempts=0, started_at=None
        )

    def _start(
        self, function: str, event: Event, run_id: str, started: datetime | None = None
    ) -> None:
        """Start a claimed invocation: its first attempt directly, or DBOS's ``invoke`` workflow
        for a function that checkpoints; its slot is held until ``finished``."""
        with self._lock:
            self._running[function].add(run_id)
            durable = function in self._durable
        if durable:
            self.durably(function, event, run_id, 0, "")
        else:
            self._direct.start(function, event, run_id, started)

    def durably(self, function: str, event: Event, run_id: str, failed: int, error: str) -> None:
        """Run the invocation's attempts after the first ``failed`` as DBOS's ``invoke`` workflow,
        under its id (DBOS starts one workflow per id, however often asked). A function handed
        over from its first attempt (0 failed: it checkpoints) goes to DBOS from now on."""
        if failed == 0:
            with self._lock:
                self._durable.add(function)
        self.workflows.start(function, event, run_id, failed, error)

    def finished(self, function: str, run_id: str) -> None:
        """An invocation ended (``invoke`` returned or raised): its slot is free for the next."""
        with self._lock:
            self._running[function].discard(run_id)
        self.workflows.ended(run_id)
        if self._wake is not None:
            self._wake.set()

    def _sleep_for(self, last: datetime) -> float:
        """Seconds until the next schedule is due or a missing outbox event is given up (see
        runtime/router.py), at most ``wake_timeout``."""
        due: list[datetime] = [
            croniter(trigger.cron, last).get_next(datetime)
            for spec in self.functions
            for trigger in spec.triggers
            if trigger.cron is not None
        ]
        sleep = self.wake_timeout
        if due:
            sleep = min(sleep, (min(due) - datetime.now(UTC)).total_seconds())
        gap = self._router.gaps.next_due(time.time())
        if gap is not None:
            sleep = min(sleep, gap)
        return max(0.0, sleep)

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
        """No visible event left to route and no invocation queued or running. (The persisted
        cursor may wait below a missing number for a while, see runtime/router.py: what this
        process has read is the measure here.)"""
        events = self.ws.catalog.events
        read = self._router.last
        if read is None:
            read = int(events.get_state(CURSOR, "0"))
        if read < events.latest_seq():
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
    """Queue a dead-lettered invocation again, as a new invocation; returns its id. The runtime
    claims it like any queued invocation (woken by the announcement of the new row)."""
    events = ws.catalog.events
    invocation = events.invocation(run_id)
    if invocation.status != "dead":
        raise InputError(f"invocation {run_id} is {invocation.status}, not dead-lettered")
    event = events.get(invocation.event_id)
    base = run_id.split("~", 1)[0]
    again = [
        i for i in events.invocations(function=invocation.function) if i.id.startswith(base + "~")
    ]
    pending = [i for i in again if i.status != "dead"]  # re-driven already (not dead again)
    if pending:
        raise Conflict(
            f"invocation {run_id} was re-driven already as {pending[-1].id} "
            f"({pending[-1].status}); retry that one if it fails"
        )
    new_id = f"{base}~{1 + len(again)}"
    events.invocation_queued(new_id, invocation.function, event.id)
    return new_id


def describe(functions: Functions) -> list[dict[str, Any]]:
    return [
        {
            "function": s.name,
            "triggers": ", ".join(t.describe() for t in s.triggers),
            "concurrency": s.concurrency,
            "timeout": s.timeout,
            "retries": s.retries,
            "durable": s.durable,  # every attempt a DBOS workflow (else the first runs directly)
        }
        for s in functions
    ]
