"""Announcements of committed changes, so that whoever waits for them wakes instead of polling.

Two channels: :data:`WORK` (an event added, an invocation queued: the runtime's dispatcher waits
on it) and :data:`SERVING` (an alias moved, a release's index rebuilt: the API's hot swap waits on
it). An announcement is made inside the writing transaction and delivered once it commits: to
this process's listeners (:func:`listen`), and on PostgreSQL by a ``NOTIFY`` on the channel that
commits with the change, for other processes (catalog/wake.py listens). Other processes writing a
SQLite catalog are heard by watching its files (catalog/wake.py).

An announcement is a flag, not a message: a woken reader reads whatever the catalog holds.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, text

from embedlake.catalog.database import Database

WORK = "embedlake_work"  # new events and queued invocations
SERVING = "embedlake_serving"  # alias moves and rebuilt release indexes

# a NOTIFY's payload: this process. Its own listeners heard the commit already, so its LISTEN
# connection ignores what it announced itself (a second look per event during a burst)
ORIGIN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

_listeners: dict[tuple[str, str], list[Callable[[], None]]] = {}  # (database URL, channel)
_lock = threading.Lock()


def listen(url: str, channel: str, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after each commit in this process that announces on ``channel`` of the
    database at ``url`` (its engine's URL, as ``str(engine.url)``); returns the function that
    unsubscribes."""
    with _lock:
        _listeners.setdefault((url, channel), []).append(callback)

    def cancel() -> None:
        with _lock:
            if callback in _listeners.get((url, channel), []):
                _listeners[(url, channel)].remove(callback)

    return cancel


class _Channel:
    """One channel of one database: its ``fire`` is what a transaction runs once committed (the
    same bound method each time, so a transaction that announces twice fires once)."""

    def __init__(self, url: str, channel: str) -> None:
        self.key = (url, channel)

    def fire(self) -> None:
        with _lock:
            callbacks = list(_listeners.get(self.key, ()))
        for callback in callbacks:
            callback()


_channels: dict[tuple[str, str], _Channel] = {}
_NOTIFY = text("SELECT pg_notify(:channel, :origin)")


def announce(db: Database, conn: Connection, channel: str) -> None:
    """Announce on ``channel`` once the transaction of ``conn`` commits (never if it rolls back:
    a wake-up sent before the commit could let the woken reader miss the change)."""
    if db.engine.dialect.name == "postgresql":  # delivered at commit, once per transaction
        conn.execute(_NOTIFY, {"channel": channel, "origin": ORIGIN})
    url = str(db.engine.url)
    with _lock:
        target = _channels.setdefault((url, channel), _Channel(url, channel))
    db.after_commit(target.fire)
