"""Compute engine ``ray``: fan-out tasks run as Ray tasks, locally or on a cluster (``ray://``).

Each Ray worker process opens the workspace once from the settings it is sent and keeps it (and the
models it loads) for the tasks that follow. A task that dies with its worker is retried by Ray.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from embedlake.config import Settings
from embedlake.runtime.engines import resolve_task
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

_workspaces: dict[str, Workspace] = {}  # per Ray worker process


def _workspace(settings: Settings) -> Workspace:
    key = settings.model_dump_json()  # secrets are masked in the key, kept in the object
    if key not in _workspaces:
        _workspaces[key] = Workspace.from_settings(settings)
    return _workspaces[key]


@ray.remote(max_retries=3)
def _run(settings: Settings, ref: str, item: Any) -> Any:
    return resolve_task(ref)(_workspace(settings), item)


class RayEngine:
    name = "ray"

    def __init__(self, ws: Workspace) -> None:
        settings = ws.settings
        if not ray.is_initialized():
            address = settings.runtime.ray_address or None
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self._settings = settings
        # Ask Ray for a GPU when the encoder is configured to use one.
        self._gpus = 1 if settings.embed.device == "cuda" else 0
        self.submitted = 0

    def run(self, ref: str, item: Any) -> Any:
        task = _run.options(num_gpus=self._gpus) if self._gpus else _run
        self.submitted += 1
        return ray.get(task.remote(self._settings, ref, item))

    def close(self) -> None:
        pass  # the Ray connection belongs to the process; tests and `up` shut it down
