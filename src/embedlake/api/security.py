"""What a web page open in the same browser must not be able to make this server do.

A server on a laptop (``api.auth = "open"``, no keys) trusts its loopback clients, and a browser is
one: any page it shows can send requests to ``http://localhost:8000``. Three checks close that:

- **Host allow-list** (``Guard``): a page on ``evil.example`` whose name is made to resolve to
  127.0.0.1 (DNS rebinding) sends ``Host: evil.example``; only loopback names and the names in
  ``api.allowed_hosts`` are answered. Always in open mode; in keys mode once names are listed (a key
  is needed anyway, and behind a proxy we cannot guess the names).
- **Origin**: a state-changing request (POST, PUT, PATCH, DELETE) that carries an ``Origin`` must
  come from this server's own origin (or a listed name), else 403 naming the origin.
- **JSON bodies only**: POST, PUT and PATCH need ``Content-Type: application/json``, else 415. A
  cross-site form or a ``no-cors`` fetch can only send form or text bodies; JSON needs a CORS
  preflight, which this server never grants. DELETE has no body, but cross-site pages cannot send
  it without a preflight either.

``SecurityHeaders`` adds to every response: ``nosniff``, ``DENY`` framing, ``no-referrer``, and a
Content-Security-Policy: ``default-src 'none'`` for the API (JSON runs nothing), a page policy
(``page_policy``) set by the routes that serve HTML.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake.api import problems

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
# what SecurityHeaders adds to an API response that set none of them, as raw ASGI headers
API_HEADERS = [
    (name.encode(), value.encode())
    for name, value in {**HEADERS, "content-security-policy": API_POLICY}.items()
]
_DEFAULT_PORT = {"http": 80, "https": 443}


def page_policy(
    *, inline_scripts: Iterable[str] = (), inline_styles: Iterable[str] = (), eval_: bool = False
) -> str:
    """The CSP of a page of ours: scripts, styles and data from this origin only; an inline script
    or ``<style>`` only by the hash of its text; ``eval_`` for the map, whose WebGL library (regl)
    compiles its draw calls with ``Function``."""
    scripts = " ".join(["'self'", *(["'unsafe-eval'"] if eval_ else []), *_hashes(inline_scripts)])
    styles = " ".join(["'self'", *_hashes(inline_styles)])
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; img-src 'self' data:; "
        "connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _hashes(texts: Iterable[str]) -> list[str]:
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(t.encode()).digest()).decode() + "'"
        for t in texts
    ]


def allowed_hosts(open_mode: bool, listed: Iterable[str]) -> frozenset[str] | None:
    """The Host names to answer (None: any), from ``api.auth`` and ``api.allowed_hosts``."""
    names = frozenset(_hostname(n) for n in listed)
    if not open_mode and not names:
        return None
    return LOOPBACK_NAMES | names


def _hostname(value: str) -> str:
    """``[::1]:8000`` → ``::1``; ``LocalHost.`` → ``localhost``."""
    host = value.strip().lower()
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest and not (rest[:1] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
            return ""  # "[::1]evil": no name a server serves
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _port(value: str) -> int | None:
    """The port a Host value names: None when it names none, -1 when it is no number (so that it
    matches no origin's port)."""
    tail = value.rpartition("]")[2] if value.startswith("[") else value
    port = tail.rpartition(":")[2] if tail.count(":") == 1 else ""  # a bare IPv6 has no port
    if not port:
        return None
    # isascii too: a header is read as Latin-1, and "²" passes isdigit but not int()
    return int(port) if port.isascii() and port.isdigit() else -1


def _same_origin(origin: str, host: str, trusted: frozenset[str]) -> bool:
    """``Origin`` names the host this request addressed (scheme's default port if none), or a
    name the operator listed (a reverse proxy that rewrites Host)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    default = _DEFAULT_PORT.get(parts.scheme)
    if default is None or not parts.hostname:
        return False
    if parts.hostname in trusted:
        return True
    return parts.hostname == _hostname(host) and (origin_port or default) == (
        _port(host) or default
    )


class Policy:
    """Which requests the guard refuses (a foreign Host, a cross-origin state change, a state
    change without a JSON body: see the module docstring); shared by the guard and the fast
    path of the common search (api/fastpath.py), which stands aside for any it refuses."""

    def __init__(self, hosts: frozenset[str] | None, trusted: Iterable[str]) -> None:
        self.hosts = hosts
        self.trusted = frozenset(_hostname(n) for n in trusted)

    def refusal(self, method: str, headers: Headers) -> JSONResponse | None:
        host = headers.get("host", "")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return problems.problem(
                403,
                "host",
                "Host not allowed",
                f"this server does not answer for Host {host!r}: it answers "
                f"{', '.join(sorted(self.hosts))} (add a name to api.allowed_hosts)",
            )
        if method not in STATE_CHANGING:
            return None
        origin = headers.get("origin")
        if origin and not _same_origin(origin, host, self.trusted):
            return problems.problem(
                403,
                "origin",
                "Cross-origin request",
                f"a page from origin {origin!r} may not change this server's state (it is not "
                f"the origin of {host!r}; a name of api.allowed_hosts would be trusted)",
            )
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if method in WITH_BODY and media != "application/json":
            return problems.problem(
                415,
                "media-type",
                "Unsupported media type",
                f"{method} requests change state and need a JSON body: send Content-Type: "
                f"application/json (got {media or 'no Content-Type'}); an empty body is fine",
            )
        return None


class Guard:
    """Refuses, before anything is read or run, what its :class:`Policy` refuses."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.policy.refusal(scope["method"], Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds ``HEADERS`` and, unless the route set its own, the API's CSP to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", API_POLICY)
            await send(message)

        await self.app(scope, receive, sending)
