"""uvicorn's HTTP protocol (httptools) with a deadline for each request's headers.

uvicorn times a kept-alive connection that stays idle, and ``api.limits`` times a request's body,
but nothing times the headers: a client that sends half a request line, or a header a byte at a
time, held its connection (and one of ``api.max_connections``) for good, so a thousand such
sockets made every request a 503, the probes' too. Here a connection must complete each
request's headers within ``seconds`` of its start (the connection's, or the previous response's
end), or it is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadline(HttpToolsProtocol):
    # set by ``embedlake serve`` (and each ``--workers`` process) from api.header_timeout_seconds
    seconds: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.seconds, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
