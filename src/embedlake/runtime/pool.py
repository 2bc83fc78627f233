"""An elastic thread pool: it grows with the backlog up to a maximum and shrinks when idle.

This is the autoscaling of the embedded default: the local engine runs heavy tasks here, so a
burst of shards starts up to ``max_workers`` threads and a quiet runtime holds none. (The standard
``ThreadPoolExecutor`` grows but never lets its threads go.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class ElasticPool:
    def __init__(self, max_workers: int, idle_seconds: float = 30.0, name: str = "worker") -> None:
        self.max_workers = max_workers
        self.idle_seconds = idle_seconds
        self._name = name
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self.peak = 0

    @property
    def size(self) -> int:
        return self._workers

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            self._tasks.put((future, fn))
            # more work waiting than idle threads to take it: grow (up to the maximum)
            if self._tasks.qsize() > self._idle and self._workers < self.max_workers:
                self._workers += 1
                self._idle += 1  # counted idle until it takes its first task
                self.peak = max(self.peak, self._workers)
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._workers}", daemon=True
                ).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                item = self._tasks.get(timeout=self.idle_seconds)
            except queue.Empty:
                item = None
            with self._lock:
                self._idle -= 1
                if item is None:
                    self._workers -= 1
                    return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                with self._lock:
                    self._idle += 1
                continue
            try:
                result, error = fn(), None
            except BaseException as exc:
                result, error = None, exc
            with self._lock:
                self._idle += 1  # idle before the caller learns the result: no needless growth
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def shutdown(self) -> None:
        with self._lock:
            workers = self._workers
        for _ in range(workers):
            self._tasks.put(None)
