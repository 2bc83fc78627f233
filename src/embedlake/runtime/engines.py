"""Compute engines for heavy fan-out tasks ``fn(ws, item)``: threads of this process, worker
processes on this machine (runtime/processes.py), or a Ray cluster.

Tasks are named by an importable reference (``module:function``), so any engine can run them in
another process: the Ray engine ships the reference to one of its actors, each a process that opened
the workspace from the driver's settings and keeps the models its tasks load (see runtime/ray.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from embedlake.config import Settings
from embedlake.errors import ConfigError
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


def task_ref(fn: Callable[..., Any]) -> str:
    ref = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in ref:
        raise ConfigError(f"fan-out task {ref} must be a module-level function")
    return ref


def resolve_task(ref: str) -> Callable[[Workspace, Any], Any]:
    module, _, name = ref.partition(":")
    fn: Callable[[Workspace, Any], Any] = getattr(importlib.import_module(module), name)
    return fn


class Engine(Protocol):
    name: str

    def run(self, ref: str, item: Any) -> Any: ...
    def close(self) -> None: ...


class LocalEngine:
    """Run tasks on an elastic pool of threads in this process: it grows with the backlog up to
    ``runtime.max_workers`` and shrinks after ``runtime.idle_seconds`` without work."""

    name = "local"

    def __init__(self, ws: Workspace) -> None:
        from embedlake.runtime.pool import ElasticPool

        self._ws = ws
        settings = ws.settings.runtime
        self.pool = ElasticPool(settings.max_workers, settings.idle_seconds, name="embedlake-task")

    def run(self, ref: str, item: Any) -> Any:
        task = resolve_task(ref)
        return self.pool.submit(lambda: task(self._ws, item)).result()

    def close(self) -> None:
        self.pool.shutdown()


ENGINES: dict[str, str] = {
    "local": "embedlake.runtime.engines:LocalEngine",
    "ray": "embedlake.runtime.ray:RayEngine",
    "processes": "embedlake.runtime.processes:ProcessEngine",
}


def open_engine(settings: Settings, ws: Workspace) -> Engine:
    module, _, name = ENGINES[settings.runtime.engine].partition(":")
    cls = getattr(importlib.import_module(module), name)
    engine: Engine = cls(ws)
    log.info("compute engine: %s", engine.name)
    return engine
