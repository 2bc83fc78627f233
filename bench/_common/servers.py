"""A server in a subprocess on a free loopback port: started, waited for, and always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_BIN = Path(sys.executable).parent
EMBEDLAKE = str(_BIN / "embedlake") if (_BIN / "embedlake").exists() else "embedlake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Terminate ``proc`` if it still runs; kill it if it does not end within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def _ready(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
        return bool(r.status == 200)
    return False


@contextlib.contextmanager
def running(
    cmd: list[str], port: int, log: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``cmd`` (listening on ``port``; ``env`` added to this one's), wait for /readyz, and
    stop it however we leave. Its output goes to ``log``."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"server not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield url, proc
    finally:
        stop(proc)


def post(url: str, body: str, key: str = "") -> tuple[int, bytes]:
    """POST a JSON ``body`` (with a bearer ``key`` if given): the status and the response bytes."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, body.encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
