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

import sqlite3
import threading
from pathlib import Path
from typing import Any, Self

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


class _Connection(sqlite3.Connection):
    lock: threading.Lock  # set on the subclass made per database file
    _held = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _Cursor)

    def _before(self, sql: str) -> None:
        if not self._held and not self.in_transaction and _writes(sql):
            # a timeout, not a deadlock, when a thread writes on two connections at once
            self._held = self.lock.acquire(timeout=WAIT)

    def _after(self) -> None:
        if self._held and not self.in_transaction:  # a statement outside a transaction
            self._release()

    def _release(self) -> None:
        self._held = False
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
            _classes[key] = type("SerialWriter", (_Connection,), {"lock": threading.Lock()})
        return _classes[key]
