"""Progress on screen for steps that take more than a moment: a spinner with the elapsed time
and what the step is doing now, and the stages of a release build as they pass."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from embedlake.steps import Steps, Task

R = TypeVar("R")


@dataclass
class Working:
    """What a running step shows: ``say`` changes its line, ``count`` moves its bar."""

    _bar: Progress
    _task: Any
    started: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        self._bar.update(self._task, description=text)

    def count(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def working(console: Console, text: str, *, counted: bool = False) -> Iterator[Working]:
    """A spinner, the step's text, a bar (``counted``: moved by :meth:`Working.count`) and the
    time spent; it leaves the screen when the step ends (the caller prints what it did)."""
    counts = (BarColumn(), MofNCompleteColumn()) if counted else ()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        *counts,
        TimeElapsedColumn(),
    )
    # no redirection of sys.stdout/stderr into the bar: what libraries print stays where
    # cli.quiet sends it (a rich Live display would otherwise show it on the terminal)
    with Progress(
        *columns, console=console, transient=True, redirect_stdout=False, redirect_stderr=False
    ) as bar:
        yield Working(bar, bar.add_task(text, total=None))


class StageSteps:
    """Run a job's steps here and now (like :class:`embedlake.steps.DirectSteps`), telling
    ``on_stage`` the name of each one as it starts."""

    def __init__(self, inner: Steps, on_stage: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_stage = on_stage

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        self._on_stage(name)
        return self._inner.step(name, fn, *args)

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        self._on_stage(name)
        return self._inner.map(name, fn, items)
