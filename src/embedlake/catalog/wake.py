"""Waking on announced changes, instead of polling for them.

Whoever writes work (an event, a queued invocation) or a serving change (an alias move, a rebuilt
index) announces it when the transaction commits (catalog/announce.py): to this process's
listeners, and on PostgreSQL with a ``NOTIFY`` that :class:`Wake` hears on a ``LISTEN``
connection of its own. Another process writing a SQLite catalog announces nothing here, so a
:class:`Wake` made with ``watch_file`` also watches the database's files (inotify, through
watchfiles): any commit there wakes it. A wake-up is a flag, not a message: the woken reader reads
whatever the catalog holds, so announcements that arrive together cost one look.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from embedlake.catalog.announce import ORIGIN, WORK, listen

log = logging.getLogger(__name__)

LISTEN_RETRY = 5.0  # seconds before a lost LISTEN connection is opened again


class Wake:
    """A flag set when ``channel`` is announced; a waiter sleeps on it with a long timeout."""

    def __init__(self, engine: Engine, channel: str = WORK, *, watch_file: bool = False) -> None:
        self._flag = threading.Event()
        self._stop = threading.Event()
        self._channel = channel
        self._cancel = listen(str(engine.url), channel, self.set)
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()  # PostgreSQL: LISTEN is open; SQLite: the watch is
        if engine.dialect.name == "postgresql":
            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._start(self._listen, url)
        elif watch_file and engine.url.database not in (None, "", ":memory:"):
            self._start(self._watch, Path(str(engine.url.database)).resolve())

    def _start(self, target: Callable[[Any], None], arg: object) -> None:
        thread = threading.Thread(
            target=target, args=(arg,), name=f"embedlake-wake-{self._channel}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def set(self) -> None:
        self._flag.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until work is announced or ``timeout`` passes (True: announced). The flag is
        cleared on return, before the caller looks: what is announced during its look wakes
        the next wait at once."""
        announced = self._flag.wait(timeout)
        self._flag.clear()
        return announced

    def close(self) -> None:
        self._stop.set()
        self._cancel()
        for thread in self._threads:
            thread.join(timeout=5)

    def _listen(self, url: str) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    self.listening.set()
                    self.set()  # what was written while not listening
                    while not self._stop.is_set():
                        # the timeout only bounds how long a stop waits: it runs no query
                        for note in conn.notifies(timeout=1.0):
                            if note.payload != ORIGIN:  # this process's own were heard
                                self.set()
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("LISTEN %s lost (%s); again in %g s", self._channel, exc, LISTEN_RETRY)
                self._stop.wait(LISTEN_RETRY)

    def _watch(self, database: Path) -> None:
        """Set the flag when the SQLite database or its write-ahead log changes on disk (a
        commit of any process; this one's too, which costs a spare look)."""
        from watchfiles import watch

        names = {str(database), f"{database}-wal"}
        try:
            # an empty yield each second (yield_on_timeout): the first tells that the watch is
            # in place; a change before it is covered by the look that follows
            for changes in watch(
                database.parent,
                watch_filter=lambda _change, path: path in names,
                recursive=False,
                stop_event=self._stop,
                debounce=50,
                step=50,
                rust_timeout=1000,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if not self.listening.is_set():
                    self.listening.set()
                    self.set()
                elif changes:
                    self.set()
        except Exception:  # the waiter's timeout is the safety net
            log.exception("cannot watch %s for changes by other processes", database)
