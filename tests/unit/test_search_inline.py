"""When a search may run on the event loop (api/routes/search.py ``alone``): only when no other
request task exists, running or waiting to start; requests read in the same turn of the loop see
each other before any of them runs."""

from __future__ import annotations

import asyncio

from embedlake.api.routes.search import alone


class RequestResponseCycle:
    """Named as uvicorn's: its ``run_asgi`` coroutine is one request's task."""

    def __init__(self, started: asyncio.Event | None = None) -> None:
        self.started = started
        self.seen: bool | None = None

    async def run_asgi(self) -> None:
        self.seen = alone()
        if self.started is not None:
            self.started.set()
            await asyncio.sleep(0.05)  # a request waiting on the search threads


def test_a_lone_request_is_alone_and_company_is_seen() -> None:
    async def scenario() -> None:
        lone = RequestResponseCycle()
        await asyncio.get_running_loop().create_task(lone.run_asgi())
        assert lone.seen is True

        # three requests read in one turn: their tasks exist before any runs
        together = [RequestResponseCycle() for _ in range(3)]
        await asyncio.gather(*(asyncio.create_task(c.run_asgi()) for c in together))
        assert [c.seen for c in together] == [False, False, True]  # the last ran alone

        # one request parked on a thread: the next is not alone
        started = asyncio.Event()
        parked = asyncio.create_task(RequestResponseCycle(started).run_asgi())
        await started.wait()
        later = RequestResponseCycle()
        await asyncio.create_task(later.run_asgi())
        assert later.seen is False
        await parked

        other_work = asyncio.create_task(asyncio.sleep(0.01))  # not a request: no company
        after = RequestResponseCycle()
        await asyncio.create_task(after.run_asgi())
        assert after.seen is True
        await other_work

    asyncio.run(scenario())
