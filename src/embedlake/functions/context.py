"""The context a handler receives: what a Lambda context offers, plus the workspace and steps."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from embedlake.events import Event
from embedlake.steps import DirectSteps, Steps, Task
from embedlake.workspace import Workspace

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Context:
    ws: Workspace
    function_name: str
    request_id: str
    timeout: float = 600.0
    attempt: int = 1
    steps: Steps | None = None
    started: float = field(default_factory=time.monotonic)
    _emitted: int = field(default=0, init=False)

    @property
    def emitted(self) -> int:
        """How many events this invocation raised so far: a runner that sees some pokes dispatch
        to route them now (on AWS) rather than at its next schedule."""
        return self._emitted

    @property
    def lake(self) -> Any:
        return self.ws.lake

    @property
    def catalog(self) -> Any:
        return self.ws.catalog

    def get_remaining_time_in_millis(self) -> int:
        """As in AWS Lambda: time left before this invocation times out."""
        return max(0, int((self.started + self.timeout - time.monotonic()) * 1000))

    def emit(self, event_type: str, subject: str, data: dict[str, Any] | None = None) -> Event:
        """Raise a domain event. Its id derives from this invocation, so a re-run emits the same
        event again and the outbox keeps one."""
        self._emitted += 1
        event = Event(
            type=event_type,
            subject=subject,
            data=data or {},
            id=f"{self.request_id}/{self._emitted}",
        )
        self.ws.catalog.events.add(event)
        return event

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        """A checkpointed step: after a crash, a finished step is not run again."""
        return (self.steps or DirectSteps(self.ws)).step(name, fn, *args)

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        """Fan out ``fn(ws, item)`` over ``items`` (one invocation each) and join on all."""
        return (self.steps or DirectSteps(self.ws)).map(name, fn, items)


def direct_context(ws: Workspace, function_name: str, request_id: str = "direct") -> Context:
    return Context(ws=ws, function_name=function_name, request_id=request_id)
