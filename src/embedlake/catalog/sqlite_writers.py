"""One writer at a time per SQLite file in this process, queued on a Python lock.

SQLite lets one transaction write at a time; a second writer waits in SQLite's busy handler,
which sleeps in steps of up to 100 ms and does not wake when the lock frees. With several
threads writing short transactions (the runtime: a dispatcher, workers finishing invocations,
DBOS's checkpoints), those sleeps, not the work, set the pace. Here a connection takes the
file's lock before its first write (the statement before which Python's ``sqlite3`` opens the
transaction) and gives it back at commit or rollback, so the next writer starts the moment the
previous one ends. Other processes are still waited out by the busy handler.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

WAIT = 30.0  # seconds a writer queues here before it goes on to SQLite's own busy wait
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN")

_classes: dict[str, type[sqlite3.Connection]] = {}
_classes_lock = threading.Lock()


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        conn: Any = self.connection
        conn._before(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            conn._after()

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        conn: Any = self.connection
        conn._before(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            conn._after()


class _Owner:
    """The thread holding a file's lock (its ident), or None."""

    def __init__(self) -> None:
        self._ident: int | None = None

    def get(self) -> int | None:
        return self._ident

    def set(self, ident: int | None) -> None:
        self._ident = ident


class _Connection(sqlite3.Connection):
    lock: threading.Lock  # set on the subclass made per database file
    owner: _Owner  # and who holds it
    _held = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _Cursor)

    def _before(self, sql: str) -> None:
        if self._held or self.in_transaction or not _writes(sql):
            return
        if self.owner.get() == threading.get_ident():
            # this thread already writes on another connection to the file: waiting here
            # would wait on itself; SQLite's busy handler decides, as it would without us
            return
        self._held = self.lock.acquire(timeout=WAIT)
        if self._held:
            self.owner.set(threading.get_ident())
        else:
            log.warning("waited %g s for this process's other SQLite writer; going on", WAIT)

    def _after(self) -> None:
        if self._held and not self.in_transaction:  # a statement outside a transaction
            self._release()

    def _release(self) -> None:
        self._held = False
        self.owner.set(None)
        self.lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if self._held:
                self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if self._held:
                self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._held:
                self._release()


def connection_factory(database: str) -> type[sqlite3.Connection]:
    """The ``sqlite3.connect(factory=...)`` whose connections share ``database``'s lock."""
    key = str(Path(database).resolve())
    with _classes_lock:
        if key not in _classes:
            shared = {"lock": threading.Lock(), "owner": _Owner()}
            _classes[key] = type("SerialWriter", (_Connection,), shared)
        return _classes[key]


def _after_fork_in_child() -> None:
    # a child forked while another thread of the parent wrote would inherit a held lock that
    # nobody in the child can release: it starts with fresh ones
    for cls in _classes.values():
        cls.lock = threading.Lock()  # type: ignore[attr-defined]
        cls.owner = _Owner()  # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_after_fork_in_child)
