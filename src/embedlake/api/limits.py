"""Limits a request meets before any work is done for it, each refusal a problem that names the
limit and its ``[api]`` setting (the table is in docs/api.md).

``RequestLimits`` is the outermost check: a body over ``api.max_body_bytes`` is refused by its
Content-Length or, streamed without one, as soon as the bytes read pass the limit, so it is never
held whole; a body nested deeper than ``api.max_json_depth`` is refused before it is parsed. The
routes then check counts and lengths (``check_texts`` here, ``search.limits`` for searches).
"""

from __future__ import annotations

import asyncio
import re

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake.api import problems
from embedlake.config import ApiSettings
from embedlake.errors import InputError, TimedOut, TooLarge

# a JSON string, escapes included (unrolled: no backtracking per character)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deeply ``body``'s objects and arrays nest, without parsing it: brackets outside strings
    counted in C and numpy (a 4 MB body of brackets takes ~30 ms; Python's own parser would give
    up past ~1,000 levels with a RecursionError)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


class RequestLimits:
    """413 for a body over ``api.max_body_bytes`` (by Content-Length, or counted as it streams
    in) or nested deeper than ``api.max_json_depth``. The body is read here, at most the limit,
    and handed on whole."""

    def __init__(self, app: ASGIApp, api: ApiSettings) -> None:
        self.app, self.max_bytes, self.max_depth = app, api.max_body_bytes, api.max_json_depth
        self.seconds = api.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = first_header(scope, b"content-length")
        refusal = self._declared(declared) if declared is not None else None
        body = b""
        if refusal is None:
            body, refusal = await self._read(receive)
        if refusal is None and may_nest_deeper(body, self.max_depth):
            depth = json_depth(body)
            if depth > self.max_depth:
                refusal = TooLarge(
                    f"the body nests {depth:,} levels deep; the limit is {self.max_depth:,} "
                    "(api.max_json_depth)"
                )
        if refusal is not None:
            await problems.from_error(refusal)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    def _declared(self, declared: bytes) -> InputError | None:
        length = declared_length(declared)
        if length is None:
            return InputError("Content-Length is not a number")
        if length > self.max_bytes:
            said = f"{length:,}" if length < _HUGE else f"a {len(declared):,}-digit number of"
            return TooLarge(
                f"the body has {said} bytes; the limit is {self.max_bytes:,} (api.max_body_bytes)"
            )
        return None

    async def _read(self, receive: Receive) -> tuple[bytes, InputError | None]:
        """The whole body, or the refusal once more than the limit has come in, or once
        ``api.body_timeout_seconds`` passed before it all came."""
        chunks, seen, more = [], 0, True
        try:
            async with asyncio.timeout(self.seconds):
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break  # the client went away: the app's next receive() says so too
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_bytes:
                        over = f"the body is over {self.max_bytes:,} bytes (api.max_body_bytes)"
                        return b"", TooLarge(over)
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            return b"", timed_out(self.seconds, seen)
        return b"".join(chunks), None


def timed_out(seconds: float, seen: int) -> TimedOut:
    return TimedOut(
        f"the body did not arrive within {seconds:g} s ({seen:,} bytes came); the limit is "
        "api.body_timeout_seconds"
    )


_HUGE = 10**18  # more bytes than any body: a longer number stands for this


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's first value, as Starlette's ``request.headers.get`` reads it (the
    limits and the fast path of api/fastpath.py read the same Content-Length)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def may_nest_deeper(body: bytes, limit: int) -> bool:
    """Whether ``body`` has more brackets than ``limit``: fewer cannot nest deeper, so only such
    a body needs ``json_depth``."""
    return body.count(b"[") + body.count(b"{") > limit


def declared_length(value: bytes) -> int | None:
    """A Content-Length header's value, or None when it is no number. Bytes, not text: only ASCII
    digits pass (``"²".isdigit()`` is true, and ``int("²")`` fails); a number of more than 18
    digits counts as ``_HUGE`` (``int()`` refuses strings of over 4,300 digits)."""
    if not value.isdigit():
        return None
    return int(value) if len(value) <= 18 else _HUGE


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the body already read, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def check_texts(api: ApiSettings, texts: list[str], what: str = "texts") -> None:
    """Texts per request (``api.max_texts``) and characters per text (``api.max_text_chars``)."""
    if len(texts) > api.max_texts:
        raise TooLarge(f"{len(texts):,} {what}; the limit is {api.max_texts:,} (api.max_texts)")
    for n, text in enumerate(texts):
        if len(text) > api.max_text_chars:
            raise TooLarge(
                f"{what}[{n}] has {len(text):,} characters; the limit is "
                f"{api.max_text_chars:,} (api.max_text_chars)"
            )
