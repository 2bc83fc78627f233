"""DBOS, launched when a durable invocation needs it and shut down when none has for a while.

Only long jobs (functions that checkpoint) and retries run as DBOS workflows; a first attempt
runs directly (runtime/direct.py). DBOS, once launched, polls its system database on its own
threads about seven times a second whatever we configure (docs/decisions/0017), which was all of
an idle runtime's CPU. So it runs only while it has work: launched at the first workflow, or at
the start when this worker left invocations unfinished (DBOS recovers the ones it knows), and
shut down after ``runtime.idle_seconds`` with no workflow running. The catalog says whether a
start needs DBOS: every workflow is an invocation this worker claimed and has not finished.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID
from sqlalchemy import Engine as SAEngine
from sqlalchemy import create_engine, make_url
from sqlalchemy import event as sa_event

from embedlake.catalog.sqlite_writers import connection_factory
from embedlake.events import Event
from embedlake.functions import Functions
from embedlake.runtime.durable import INVOKE, invoke
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

RUNNING = ("PENDING", "ENQUEUED")  # DBOS's states of a workflow that has not ended
IDLE_POLL = 3600.0  # seconds: the polls of DBOS features the runtime does not use
NOTIFY_COALESCE = 1.0  # seconds: DBOS's notifier's sleep, also the most a stop waits for it


def _dbos_config(ws: Workspace, functions: Functions) -> DBOSConfig:
    # every running invocation holds two executor threads (``invoke`` waits on its attempt), so
    # the pool has room for all of them and for the fan-out items they wait on
    held = 2 * sum(spec.concurrency for spec in functions)
    url = ws.settings.runtime_database_url()
    config: DBOSConfig = {
        "name": "embedlake",
        "system_database_url": url,
        "console_log_level": "WARNING",
        "run_migrations": True,
        "max_executor_threads": held + ws.settings.runtime.max_workers * 4,
        "executor_id": ws.settings.executor_id(),
        # idle work of DBOS features the runtime does not use: its schedules (ours are the
        # dispatcher's) are polled every 30 s, and on PostgreSQL its notifier wakes every 10 ms
        # to flush DBOS events and streams. (Its SQLite notification poller only sleeps when
        # nobody waits, and a long sleep would hold DBOS.destroy up to its 10 s join.)
        "scheduler_polling_interval_sec": IDLE_POLL,
        "notification_coalesce_sec": NOTIFY_COALESCE,
    }
    if url.startswith("sqlite"):
        config["system_database_engine"] = sqlite_system_engine(url)
    return config


def sqlite_system_engine(url: str) -> SAEngine:
    """DBOS's SQLite system database as DBOS makes it (IMMEDIATE transactions, a long busy
    timeout, foreign keys), in WAL mode with ``synchronous=NORMAL`` as the catalog is: DBOS's
    default rollback journal syncs the disk at every commit and blocks writers while anyone
    reads, which capped the runtime near 9 invocations a second."""
    factory = connection_factory(str(make_url(url).database))  # writers queue, see there
    engine = create_engine(url, pool_size=16, max_overflow=16, connect_args={"factory": factory})

    @sa_event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        for pragma in (
            "busy_timeout=30000",
            "foreign_keys=ON",
            "journal_mode=WAL",
            "synchronous=NORMAL",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    return engine


class Workflows:
    """DBOS's life in this process, and the workflows it runs for this runtime."""

    def __init__(self, ws: Workspace, functions: Functions) -> None:
        self._ws, self._functions = ws, functions
        self.idle_seconds = ws.settings.runtime.idle_seconds
        self._lock = threading.Lock()  # launch, shut-down and starts never interleave
        self._up = False
        self._running: set[str] = set()  # invocation ids of the workflows DBOS runs for us
        self._idle_since = time.monotonic()

    @property
    def up(self) -> bool:
        return self._up

    def start(self, function: str, event: Event, run_id: str, failed: int, error: str) -> None:
        """Start DBOS's ``invoke`` workflow for an invocation, under its id (DBOS starts one
        workflow per id, however often asked), launching DBOS first if it is down."""
        with self._lock:
            self._launch()
            self._running.add(run_id)
            try:
                with SetWorkflowID(run_id):
                    DBOS.start_workflow(invoke, function, event.to_json(), failed, error)
            except BaseException:
                self._ended(run_id)
                raise

    def recover(self, unfinished: list[tuple[str, str, Event]]) -> list[tuple[str, str, Event]]:
        """At the start: launch DBOS when this worker left invocations unfinished, so that it
        recovers the workflows it knows; returns the others (direct attempts, and workflows a
        crash kept from being recorded), which the runtime starts again."""
        if not unfinished:
            return []
        unknown = []
        with self._lock:
            self._launch()
            for item in unfinished:
                status = DBOS.get_workflow_status(item[0])
                if status is None:
                    unknown.append(item)
                elif status.status in RUNNING:
                    self._running.add(item[0])  # recovered by DBOS: keep it up until it ends
        return unknown

    def ended(self, run_id: str) -> None:
        """A workflow of ours ended (``invoke`` returned or raised)."""
        with self._lock:
            self._ended(run_id)

    def _ended(self, run_id: str) -> None:
        if run_id in self._running:
            self._running.discard(run_id)
            if not self._running:
                self._idle_since = time.monotonic()

    def shut_if_idle(self) -> float | None:
        """Shut DBOS down once no workflow has run for ``idle_seconds``; the seconds until it
        would be (None: it is down, or busy)."""
        with self._lock:
            if not self._up or self._running:
                return None
            left = self._idle_since + self.idle_seconds - time.monotonic()
            if left > 0:
                return left
            log.info("no durable work for %g s: DBOS shut down", self.idle_seconds)
            self._shut()
            return None

    def close(self) -> None:
        with self._lock:
            self._shut()

    def _launch(self) -> None:
        if self._up:
            return
        DBOS(config=_dbos_config(self._ws, self._functions))
        DBOS.launch()  # recovers every workflow a crash interrupted
        self._up = True
        self._idle_since = time.monotonic()
        # what it recovered keeps it up until it ends (``invoke`` reports its end to ``ended``)
        recovered = DBOS.list_workflows(
            status=list(RUNNING),
            name=INVOKE,
            executor_id=self._ws.settings.executor_id(),
            load_input=False,
            load_output=False,
        )
        self._running.update(w.workflow_id for w in recovered)

    def _shut(self) -> None:
        if self._up:
            DBOS.destroy(destroy_registry=False)
            self._up = False
