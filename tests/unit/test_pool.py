from __future__ import annotations

import threading
import time

import pytest

from embedlake.runtime.pool import ElasticPool


def _until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_grows_with_the_backlog_up_to_the_maximum_and_shrinks_when_idle() -> None:
    pool = ElasticPool(max_workers=3, idle_seconds=0.2)
    assert pool.size == 0
    gate = threading.Event()
    futures = [pool.submit(lambda n=n: (gate.wait(), n)[1]) for n in range(10)]
    assert _until(lambda: pool.size == 3)
    time.sleep(0.1)
    assert pool.size == 3 and pool.peak == 3  # never more than the maximum
    gate.set()
    assert [f.result(timeout=10) for f in futures] == list(range(10))
    assert _until(lambda: pool.size == 0)  # idle threads end
    assert pool.submit(lambda: 42).result(timeout=10) == 42  # and come back with work


def test_one_task_at_a_time_uses_one_thread() -> None:
    pool = ElasticPool(max_workers=8, idle_seconds=5)
    for n in range(20):
        assert pool.submit(lambda n=n: n * 2).result(timeout=10) == n * 2
    assert pool.peak == 1
    pool.shutdown()
    assert _until(lambda: pool.size == 0)


def test_errors_reach_the_caller() -> None:
    pool = ElasticPool(max_workers=2, idle_seconds=0.2)

    def boom() -> None:
        raise ValueError("bad item")

    with pytest.raises(ValueError, match="bad item"):
        pool.submit(boom).result(timeout=10)
    assert pool.submit(lambda: "still fine").result(timeout=10) == "still fine"
