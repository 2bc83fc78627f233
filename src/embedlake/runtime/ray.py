"""Compute engine ``ray``: fan-out tasks run on a pool of Ray actors, locally or on a cluster.

Why actors and not tasks (docs/decisions/0010-ray-engine.md): an actor is a process that holds its
CPU or GPU for as long as it holds the model. It opens the workspace once and keeps every encoder
it loads (the per-process cache of :mod:`embedlake.models.artifacts`), so only its first shard
pays for the model. Ray task workers are reused too, but not by promise, and a task's process would
keep its model in GPU memory after handing the GPU back to the scheduler.

Failures: an actor process that dies (killed, out of memory, node lost) is restarted by Ray, and the
task it was running is submitted again (``max_restarts`` / ``max_task_retries``): the caller gets
the result, not the death. Tasks are idempotent (a shard already recorded is not embedded again),
so a task that died after its work was saved is safe to run twice. An actor past its restarts is
replaced by a fresh one and the error goes to the caller; the durable runtime retries the item.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray
from ray.exceptions import ActorDiedError

from embedlake.config import Settings
from embedlake.runtime.engines import resolve_task
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_RESTARTS = 3  # deaths one actor survives (each restart loads the model again)
MAX_TASK_RETRIES = 3  # resubmissions of the task that was running when its actor died


class _Worker:
    """One process of the pool: the workspace, and the models its tasks load, stay open."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ws: Workspace | None = None

    def run(self, ref: str, item: Any) -> Any:
        # Opened at the first task, not in __init__: an error then reaches the caller as itself.
        if self._ws is None:
            self._ws = Workspace.from_settings(self._settings)
        return resolve_task(ref)(self._ws, item)


# Typed as Any: Ray's stubs do not describe what ``ray.remote`` makes of a class.
_WorkerActor: Any = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)(
    _Worker
)


def _cluster(resource: str) -> float:
    return float(ray.cluster_resources().get(resource, 0))  # type: ignore[no-untyped-call]


def wants_gpu(device: str) -> bool:
    """A GPU per actor when the encoder is set to CUDA, or to "auto" on a cluster that has GPUs
    (a CPU-only cluster that autoscales GPU nodes in needs ``embed.device = "cuda"``)."""
    if device == "cuda":
        return True
    return device == "auto" and _cluster("GPU") > 0


class RayEngine:
    """Dispatch each task to an idle actor of the pool, starting actors on demand up to ``size``.

    ``size`` is ``runtime.max_workers`` capped by the cluster's GPUs (GPU actors) or CPUs (CPU
    actors, ``runtime.ray_actor_cpus`` each, so Ray gives each process that many intra-op
    threads). Callers block while every actor is busy: the durable runtime calls from its
    compute-queue threads.
    """

    name = "ray"

    def __init__(self, ws: Workspace) -> None:
        settings = ws.settings
        if not ray.is_initialized():
            ray.init(
                address=settings.runtime.ray_address or None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self._settings = settings
        self.gpus_per_actor = 1 if wants_gpu(settings.embed.device) else 0
        # CPUs per actor: Ray gives an actor as many intra-op threads (torch, faiss's HNSW build,
        # UMAP's numba) as it reserves CPUs for it
        self.cpus_per_actor = settings.runtime.ray_actor_cpus
        gpus, cpus = _cluster("GPU"), _cluster("CPU") // self.cpus_per_actor
        room = gpus if self.gpus_per_actor else cpus
        self.size = max(1, min(settings.runtime.max_workers, int(room)))
        self._idle: list[Any] = []  # actor handles, most recently used last
        self._started = 0
        self._all: list[Any] = []
        self._ready = threading.Condition()
        self.submitted = 0
        log.info("ray engine: up to %d actors, %d GPU each", self.size, self.gpus_per_actor)

    def run(self, ref: str, item: Any) -> Any:
        actor = self._take()
        try:
            result = ray.get(actor.run.remote(ref, item))
        except ActorDiedError:
            # Dead for good (past its restarts, or its node is gone): free its place for a new one.
            log.warning("a ray actor died past its restarts; it will be replaced")
            self._drop(actor)
            raise
        except BaseException:
            self._give(actor)  # the task failed, its actor did not
            raise
        self._give(actor)
        return result

    def _take(self) -> Any:
        with self._ready:
            self.submitted += 1
            while not self._idle and self._started >= self.size:
                self._ready.wait()
            if self._idle:
                return self._idle.pop()  # the warmest: it ran last
            self._started += 1
        actor = _WorkerActor.options(
            num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor
        ).remote(self._settings)
        with self._ready:
            self._all.append(actor)
        return actor

    def _give(self, actor: Any) -> None:
        with self._ready:
            self._idle.append(actor)
            self._ready.notify()

    def _drop(self, actor: Any) -> None:
        ray.kill(actor, no_restart=True)
        with self._ready:
            if actor in self._all:  # not already stopped by close()
                self._all.remove(actor)
                self._started -= 1
            self._ready.notify()

    def close(self) -> None:
        """Stop the actors (and free their GPUs); the Ray connection belongs to the process."""
        with self._ready:
            actors, self._all, self._idle, self._started = self._all, [], [], 0
        for actor in actors:
            ray.kill(actor, no_restart=True)
