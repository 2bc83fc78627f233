"""API keys on every route but the probes: ``Authorization: Bearer <key>``, checked by scope.

In ``api.auth = "open"`` mode no key is needed, and only loopback clients are served: ``serve``
refuses to bind anything but a loopback address in that mode, and each request is checked too.

A key's check reads the catalog unless it was checked within ``api.key_cache_seconds``; that read
runs in the thread pool, never on the event loop that every request of the process shares (a
slow catalog would stall them all, the health probes included).
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from embedlake.catalog.keys import ApiKey
from embedlake.errors import Forbidden, Unauthenticated
from embedlake.workspace import Workspace

# a key is "elk_<id>_<43 characters>" (catalog/keys.py): a token far longer is no key
MAX_TOKEN_CHARS = 256
CACHE_ENTRIES = 10_000  # tokens checked lately, good and bad (each entry ~200 bytes)

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `embedlake keys create WS --scope SCOPE` (scopes: search, "
    "embed, write, admin; admin implies the others).",
)


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Auth:
    def __init__(self, ws: Workspace) -> None:
        api = ws.settings.api
        self.open = api.auth == "open"
        self._keys = ws.catalog.keys
        self._pepper = api.key_pepper.get_secret_value().encode() if api.key_pepper else b""
        self._ttl = api.key_cache_seconds
        # keyed by the token's SHA-256: an entry's size does not follow what a client sends
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def check(self, token: str | None, scope: str, client: str | None) -> ApiKey | None:
        """The key, if it allows ``scope`` (None in open mode); raises AccessDenied if not."""
        if self.open:
            if not is_loopback(client):
                raise Forbidden(  # (a proxy on loopback names its client in X-Forwarded-For)
                    "this server is in open mode and serves loopback clients only; the client "
                    f"is {client}"
                )
            return None
        if not token:
            raise Unauthenticated("this route needs an API key: Authorization: Bearer <key>")
        if len(token) > MAX_TOKEN_CHARS:  # no key is that long: not looked up, not cached
            raise Unauthenticated(f"the API key is not valid (over {MAX_TOKEN_CHARS} characters)")
        key = self._lookup(token)
        if key is None:
            raise Unauthenticated("the API key is not valid (unknown, malformed or revoked)")
        if not key.allows(scope):
            raise Forbidden(
                f"API key {key.key_id} has scopes {', '.join(key.scopes)}; "
                f"this route needs {scope!r}"
            )
        return key

    def cached(self, token: str | None) -> bool:
        """Whether checking ``token`` needs no catalog read: open mode, no token, or a token
        looked up within ``api.key_cache_seconds``."""
        if self.open or not token or len(token) > MAX_TOKEN_CHARS:
            return True
        with self._lock:
            hit = self._cache.get(_digest(token))
        return hit is not None and hit[0] > time.monotonic()

    def _lookup(self, token: str) -> ApiKey | None:
        now, digest = time.monotonic(), _digest(token)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = self._keys.verify(token, pepper=self._pepper)
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:  # bounded: garbage keys must not grow it
                self._cache = {d: e for d, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
            self._cache[digest] = (now + self._ttl, key)
        return key


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def caller(scope: str) -> Callable[..., Coroutine[Any, Any, str]]:
    """A dependency: the request's key must allow ``scope``; gives who is calling (for the
    alias history): ``key:<id>``, or ``open`` in open mode."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> str:
        auth: Auth = request.app.state.auth
        token = credentials.credentials if credentials else None
        client = request.client.host if request.client else None
        if auth.cached(token):
            key = auth.check(token, scope, client)
        else:  # a catalog read: off the event loop
            key = await run_in_threadpool(auth.check, token, scope, client)
        return f"key:{key.key_id}" if key is not None else "open"

    return check


def require(scope: str) -> Any:
    """For ``dependencies=[...]`` of a route that needs ``scope``."""
    return Depends(caller(scope))
