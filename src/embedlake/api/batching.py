"""Dynamic batching: texts of concurrent requests are embedded together.

A request's texts join a queue; a single worker takes everything queued (up to ``max_batch`` texts)
and encodes it in one call on a worker thread. While a batch is being encoded the next one fills, so
under load batches grow by themselves and throughput approaches the encoder's batch throughput.
When the previous batch held more than one request (there is company to wait for), the worker also
waits up to ``max_wait`` seconds for more; a lone client's requests never wait (its latency is the
encoder's own).

When a hot swap retires the encoder, :meth:`Batcher.retire` ends the worker once what is queued
is done; a request that still holds the old release is encoded on its own after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedlake.index import Matrix

log = logging.getLogger(__name__)


class Batcher:
    def __init__(
        self,
        encode: Callable[[list[str]], Matrix],
        *,
        max_batch: int = 64,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_batch = on_batch
        # requests' texts and futures; None: retired (the worker ends once the queue is empty)
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[Matrix]] | None] = (
            asyncio.Queue()
        )
        # one thread: batches run one after another; the encoder uses the cores itself
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="embed-batch")
        self._task: asyncio.Task[None] | None = None
        self._retired = False

    async def encode(self, texts: list[str]) -> Matrix:
        loop = asyncio.get_running_loop()
        # no await between the check and the put: the worker cannot end in between
        if self._retired and (self._task is None or self._task.done()):
            self._on_batch(len(texts))
            return await loop.run_in_executor(self._pool, self._encode, texts)
        if self._task is None:
            self._task = loop.create_task(self._run())
        future: asyncio.Future[Matrix] = loop.create_future()
        self._queue.put_nowait((texts, future))
        if self._retired:  # retired from another thread meanwhile, maybe before the worker began
            self._queue.put_nowait(None)
        return await future

    def retire(self) -> None:
        """No longer served (a hot swap replaced it; callable from any thread): the worker
        ends once what is queued is encoded, instead of waiting forever (and being destroyed
        pending when the batcher is collected)."""
        self._retired = True
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to end
                task.get_loop().call_soon_threadsafe(self._queue.put_nowait, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        crowded = False  # did the previous batch have company?
        closing = False
        while True:
            if closing and self._queue.empty():
                return
            first = await self._queue.get()
            if first is None:
                closing = True
                continue
            batch = [first]
            size = len(first[0])
            deadline = loop.time() + (self._max_wait if crowded else 0.0)
            while size < self._max_batch:
                timeout = deadline - loop.time()
                try:
                    if timeout <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if item is None:
                    closing = True
                    continue
                batch.append(item)
                size += len(item[0])
            crowded = len(batch) > 1
            texts = [t for chunk, _ in batch for t in chunk]
            self._on_batch(len(texts))
            try:
                vectors = await loop.run_in_executor(self._pool, self._encode, texts)
            except Exception as exc:  # every waiting request gets the error, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for chunk, future in batch:
                end = start + len(chunk)
                if not future.done():  # a cancelled request (client gone) is skipped
                    future.set_result(np.ascontiguousarray(vectors[start:end]))
                start = end

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=False, cancel_futures=True)
