"""Timing: medians and percentiles, the order of interleaved rounds, rates and per-round ratios.

The machines these benchmarks run on are shared and noisy: each claim is a ratio to an anchor
measured in the same run, the sides take turns (``rotated``, ``alternated``), and a ratio is the
median over rounds of the ratio within each round (``paired``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """NumPy's (linear) percentile ``q`` of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def quantile(values: list[float], q: float) -> float:
    """The ``q``-th of statistics.quantiles' 99 cut points (exclusive method); one value: itself."""
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` starting at ``round_`` (mod its length): no side always goes first."""
    n = round_ % len(items)
    return [*items[n:], *items[:n]]


def alternated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` in order on even rounds, reversed on odd ones."""
    return list(items) if round_ % 2 == 0 else list(items)[::-1]


def paired(values: Sequence[float], anchors: Sequence[float]) -> list[float]:
    """Per round: the value over its anchor of the same round."""
    return [v / a for v, a in zip(values, anchors, strict=True)]


def seconds(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call of ``fn``."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def stage(seconds_by_name: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    """``fn()``, its wall seconds kept in ``seconds_by_name[name]``."""
    started = time.perf_counter()
    out = fn()
    seconds_by_name[name] = time.perf_counter() - started
    return out


def best_of(fn: Callable[[], Any], reps: int) -> float:
    """The shortest wall time of ``reps`` calls of ``fn``."""
    return min(seconds(fn) for _ in range(reps))


def calls_per_second(fn: Callable[[Any], Any], items: Sequence[Any], min_seconds: float) -> float:
    """Calls per second of ``fn`` over ``items`` one at a time, cycling, for ``min_seconds``
    (and at least ``min(len(items), 20)`` calls)."""
    done, started = 0, time.perf_counter()
    while True:
        fn(items[done % len(items)])
        done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and done >= min(len(items), 20):
            return done / elapsed


def passes_per_second(fn: Callable[[Any], Any], items: Sequence[Any], min_seconds: float) -> float:
    """Calls per second of ``fn`` over whole passes of ``items``, repeated until ``min_seconds``."""
    done, started = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed
