"""The dynamic batcher: concurrent callers share encoder calls; errors reach every caller."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from embedlake.api.batching import Batcher
from embedlake.index import Matrix


def _encoder(calls: list[list[str]], fail: bool = False):  # type: ignore[no-untyped-def]
    def encode(texts: list[str]) -> Matrix:
        calls.append(list(texts))
        if fail:
            raise RuntimeError("encoder broke")
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    calls: list[list[str]] = []

    async def main() -> list[Matrix]:
        batcher = Batcher(_encoder(calls), max_batch=64, max_wait=0.05)
        texts = [["a" * n] * (n % 3 + 1) for n in range(1, 11)]
        out = await asyncio.gather(*(batcher.encode(t) for t in texts))
        await batcher.close()
        return out

    results = asyncio.run(main())
    assert len(calls) == 1 and len(calls[0]) == sum(n % 3 + 1 for n in range(1, 11))
    for n, rows in enumerate(results, start=1):
        assert rows.shape == (n % 3 + 1, 2) and (rows[:, 0] == n).all()


def test_batches_stop_at_max_batch_and_a_lone_client_does_not_wait() -> None:
    calls: list[list[str]] = []

    async def main() -> list[float]:
        batcher = Batcher(_encoder(calls), max_batch=4, max_wait=0.5)
        await asyncio.gather(*(batcher.encode([str(n)] * 2) for n in range(6)))
        loop = asyncio.get_running_loop()
        waits = []
        for text in ("alone", "again"):  # after a crowded batch: waits once, then not
            started = loop.time()
            await batcher.encode([text])
            waits.append(loop.time() - started)
        await batcher.close()
        return waits

    after_crowd, lone = asyncio.run(main())
    assert [len(c) for c in calls[:-2]] == [4, 4, 4] and calls[-2:] == [["alone"], ["again"]]
    assert 0.4 < after_crowd < 5  # company was likely: it waited max_wait for it
    assert lone < 0.3  # a lone client's request goes at once


def test_an_encoder_error_reaches_every_waiting_caller_and_the_batcher_goes_on() -> None:
    calls: list[list[str]] = []

    async def main() -> None:
        batcher = Batcher(_encoder(calls, fail=True), max_wait=0.01)
        results = await asyncio.gather(
            batcher.encode(["a"]), batcher.encode(["b"]), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        with pytest.raises(RuntimeError, match="encoder broke"):
            await batcher.encode(["c"])
        await batcher.close()

    asyncio.run(main())
    assert len(calls) == 2


def test_a_retired_batcher_finishes_what_is_queued_and_its_worker_ends() -> None:
    """A hot swap retires the old encoder's batcher from the follower thread: the requests
    queued on it are answered, one that still holds it later is encoded on its own, and no
    worker is left waiting (collected pending, it was "Task was destroyed" in the log)."""
    calls: list[list[str]] = []

    async def main() -> tuple[list[Matrix], Matrix, set[asyncio.Task[object]]]:
        batcher = Batcher(_encoder(calls), max_batch=2, max_wait=0.05)
        queued = [asyncio.ensure_future(batcher.encode(["x" * n])) for n in range(1, 6)]
        await asyncio.sleep(0)  # the requests are queued, the worker runs
        retiring = threading.Thread(target=batcher.retire)
        retiring.start()
        retiring.join()
        results = await asyncio.gather(*queued)
        late = await batcher.encode(["late!"])
        me = asyncio.current_task()
        for _ in range(200):  # the worker ends at its next turn
            left = {t for t in asyncio.all_tasks() if t is not me}
            if not left:
                break
            await asyncio.sleep(0.01)
        return results, late, left

    results, late, left = asyncio.run(main())
    assert [r[0, 0] for r in results] == [1, 2, 3, 4, 5]
    assert late[0, 0] == 5 and calls[-1] == ["late!"]
    assert left == set()
