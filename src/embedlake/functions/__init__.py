"""Functions: plain handlers ``handler(event, ctx)`` with triggers, in the style of AWS Lambda.

Decorators only record a spec in a :class:`Functions` registry; nothing runs at import time. The
runtime reads the registries it is given; a test calls a handler directly with an event and a
context::

    functions = Functions()

    @functions.function(on=object_created("raw/**/*.jsonl"), concurrency=2, timeout="10m",
                        retries=3)
    def ingest(event: Event, ctx: Context) -> None: ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from embedlake.errors import ConfigError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE, Event

if TYPE_CHECKING:
    from embedlake.functions.context import Context

Handler = Callable[[Event, "Context"], Any]


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """``**`` spans folders, ``*`` and ``?`` stay inside one (as in S3 event filters)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class Trigger:
    event_type: str
    pattern: str | None = None  # object key glob
    cron: str | None = None  # schedules

    def matches(self, event: Event) -> bool:
        if event.type != self.event_type:
            return False
        if self.pattern is not None:
            return bool(_glob(self.pattern).match(event.subject))
        if self.cron is not None:
            return event.subject == self.cron
        return True

    def describe(self) -> str:
        detail = self.pattern or self.cron
        return f"{self.event_type}({detail})" if detail else self.event_type


def object_created(pattern: str) -> Trigger:
    return Trigger(OBJECT_CREATED, pattern=pattern)


def object_removed(pattern: str) -> Trigger:
    return Trigger(OBJECT_REMOVED, pattern=pattern)


def on_event(event_type: str) -> Trigger:
    return Trigger(event_type)


def schedule(cron: str) -> Trigger:
    """A cron expression (``*/5 * * * *``); the runtime raises one ``schedule`` event per tick."""
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise ConfigError(f"invalid cron expression {cron!r}")
    return Trigger(SCHEDULE, cron=cron)


def parse_duration(value: str | float) -> float:
    """Seconds from ``90``, ``"30s"``, ``"10m"`` or ``"2h"``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value)
        if match is None:
            raise ConfigError(f"invalid duration {value!r}: use e.g. 90, '30s', '10m', '2h'")
        seconds = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]
    if seconds <= 0:
        raise ConfigError(f"duration must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: Handler
    triggers: tuple[Trigger, ...]
    concurrency: int
    timeout: float  # seconds
    retries: int  # attempts after the first
    durable: bool = False  # checkpoints (ctx.step, ctx.map): every attempt a DBOS workflow

    def matches(self, event: Event) -> bool:
        return any(t.matches(event) for t in self.triggers)


class Functions:
    """A registry of function specs (one per module of handlers)."""

    def __init__(self) -> None:
        self._specs: dict[str, FunctionSpec] = {}

    def function(
        self,
        *,
        on: Trigger | Sequence[Trigger],
        name: str | None = None,
        concurrency: int = 1,
        timeout: str | float = "10m",
        retries: int = 3,
        durable: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Record ``handler`` as a function. ``durable``: it is a long job that checkpoints with
        ``ctx.step``/``ctx.map``, so every attempt runs as a durable workflow; a short one's
        first attempt runs directly (one that checkpoints without saying so is handed over at
        its first step, see runtime/direct.py)."""
        triggers = (on,) if isinstance(on, Trigger) else tuple(on)
        if not triggers:
            raise ConfigError("a function needs at least one trigger")
        if concurrency < 1 or retries < 0:
            raise ConfigError("concurrency must be ≥ 1 and retries ≥ 0")
        seconds = parse_duration(timeout)

        def record(handler: Handler) -> Handler:
            spec_name = name or handler.__name__.replace("_", "-")
            if spec_name in self._specs:
                raise ConfigError(f"function {spec_name!r} is defined twice")
            self._specs[spec_name] = FunctionSpec(
                spec_name, handler, triggers, concurrency, seconds, retries, durable
            )
            return handler

        return record

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __getitem__(self, name: str) -> FunctionSpec:
        return self._specs[name]

    def merge(self, other: Functions) -> Functions:
        merged = Functions()
        for spec in [*self, *other]:
            if spec.name in merged._specs:
                raise ConfigError(f"function {spec.name!r} is defined twice")
            merged._specs[spec.name] = spec
        return merged

    def matching(self, event: Event) -> list[FunctionSpec]:
        return [spec for spec in self if spec.matches(event)]
