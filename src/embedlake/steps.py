"""Steps: how the checkpointed steps and fan-outs of a long job run.

A long job (a release build, a corpus embedding) is written as ``ctx.step(name, fn, *args)`` and
``ctx.map(name, task, items)`` calls against this protocol, so the same code runs directly (tests,
the CLI: :class:`DirectSteps`), durably on the local runtime (DBOS checkpoints) or on AWS. It sits at
the base so that the ML layer can be written in steps without knowing the functions layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

R = TypeVar("R")

# A heavy task: ``fn(ws, item)`` with a module-level, importable ``fn``, so that the Ray engine can
# ship it to another process and the durable runtime can name it in its records. The first
# argument is the Workspace (typed Any here: the base layer cannot name the data layer).
Task = Callable[[Any, Any], Any]


class Steps(Protocol):
    """How steps and fan-outs run: directly (tests, the CLI) or durably (the runtime)."""

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R: ...
    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]: ...


class DirectSteps:
    """Run everything in this process, now: what a test or a one-off call wants."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        return fn(*args)

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        return [fn(self._ws, item) for item in items]
