"""Waking the runtime on work, instead of polling for it.

Whoever adds work (an event, a queued invocation) announces it when the transaction commits
(:mod:`embedlake.catalog.outbox`): to this process's listeners, and on PostgreSQL with a
``NOTIFY`` that :class:`Wake` hears on a ``LISTEN`` connection of its own, so a worker wakes for
an event another process wrote. A wake-up is a flag, not a message: the woken dispatcher reads
whatever the catalog holds, so announcements that arrive together cost one look.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from embedlake.catalog.outbox import CHANNEL, on_work

log = logging.getLogger(__name__)

LISTEN_RETRY = 5.0  # seconds before a lost LISTEN connection is opened again


class Wake:
    """A flag set when work is announced; the dispatcher waits on it with a long timeout."""

    def __init__(self, engine: Engine) -> None:
        self._flag = threading.Event()
        self._stop = threading.Event()
        self._cancel = on_work(str(engine.url), self.set)
        self._listener: threading.Thread | None = None
        self.listening = threading.Event()  # PostgreSQL: the LISTEN connection is open
        if engine.dialect.name == "postgresql":
            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = threading.Thread(
                target=self._listen, args=(url,), name="embedlake-listen", daemon=True
            )
            self._listener.start()

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
        if self._listener is not None:
            self._listener.join(timeout=5)

    def _listen(self, url: str) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.set()  # what was written while not listening
                    while not self._stop.is_set():
                        # the timeout only bounds how long a stop waits: it runs no query
                        for _ in conn.notifies(timeout=1.0):
                            self.set()
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("LISTEN %s lost (%s); again in %g s", CHANNEL, exc, LISTEN_RETRY)
                self._stop.wait(LISTEN_RETRY)
