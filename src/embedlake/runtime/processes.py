"""Compute engine ``processes``: fan-out tasks in worker processes on this machine.

The ``local`` engine runs tasks on threads of the runtime's own process. That suits encoders that
use every core themselves (torch, ONNX Runtime), but a task whose work is Python (LSA's
tokenising) holds the GIL, so a release's shards were embedded one core at a time while the
others idled (decision 0034 measured the CLI's batch embedding: 1.47× on two cores). Here each
task runs in a pool of spawned processes, one per core (at most ``runtime.max_workers``). Each
opens the workspace from the runtime's settings at its first task and keeps the models its tasks
load (the per-process cache of :mod:`embedlake.models.artifacts`), as the Ray engine's actors do
on a cluster.

A worker that dies (killed for memory, a crash in native code) breaks the whole pool: the task
that was running fails, the pool is replaced, and the failed task's retry (the durable runtime
gives each fan-out item three attempts) runs in a fresh one.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from embedlake.config import Settings
from embedlake.machine import cores
from embedlake.runtime.engines import resolve_task
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

_ws: Workspace | None = None  # a worker's workspace, opened at its first task


def _run(settings: Settings, ref: str, item: Any) -> Any:
    # opened here rather than in a pool initializer: an error opening the workspace then
    # reaches the caller as itself, not as a broken pool
    global _ws
    if _ws is None:
        _ws = Workspace.from_settings(settings)
    return resolve_task(ref)(_ws, item)


class ProcessEngine:
    """Run tasks in a pool of worker processes: one per core, ``runtime.max_workers`` at most."""

    name = "processes"

    def __init__(self, ws: Workspace) -> None:
        self._settings = ws.settings
        self.size = max(1, min(cores(), ws.settings.runtime.max_workers))
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawned, not forked: the runtime holds threads (the queue's workers, the watcher) and
        # open connections that a forked child would inherit in whatever state they were in
        return ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"))

    def run(self, ref: str, item: Any) -> Any:
        with self._lock:
            pool = self._pool
        try:
            return pool.submit(_run, self._settings, ref, item).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first task to see it replaces it, once
                    log.warning("a worker process died: its pool is replaced")
                    self._pool = self._new_pool()
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(cancel_futures=True)
