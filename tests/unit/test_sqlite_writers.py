"""The in-process queue of SQLite writers (catalog/sqlite_writers.py): a second writer waits
for the first to commit and then writes; a thread never waits on itself."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from embedlake.catalog import sqlite_writers
from embedlake.catalog.sqlite_writers import connection_factory


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, factory=connection_factory(str(path)), timeout=0.2, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def _insert(conn: sqlite3.Connection, n: int) -> None:
    # through cursor(), as SQLAlchemy does (sqlite3's Connection.execute makes its cursor in C,
    # past the factory's override)
    conn.cursor().execute("INSERT INTO t VALUES (?)", (n,))


def _table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER)")


def test_a_second_writer_queues_until_the_first_commits(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _table(path)
    first, second = _connect(path), _connect(path)
    _insert(first, 1)  # holds the file's lock until its commit
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            # SQLite's own busy wait is 0.2 s here: only the queue makes this wait long enough
            _insert(second, 2)
            second.commit()
        except BaseException as exc:
            errors.append(exc)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(1.0), "the second writer did not wait for the first"
    first.commit()
    writer.join(10)
    assert done.is_set() and not errors, errors
    assert sorted(r[0] for r in first.execute("SELECT n FROM t")) == [1, 2]


def test_a_thread_writing_on_two_connections_does_not_wait_on_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    _table(path)
    monkeypatch.setattr(sqlite_writers, "WAIT", 3600.0)  # waiting on itself: an hour
    outcome: list[str] = []

    def one_thread() -> None:
        first, second = _connect(path), _connect(path)
        _insert(first, 1)
        try:
            _insert(second, 2)
            outcome.append("wrote")
        except sqlite3.OperationalError as exc:  # SQLite's own answer, as without the queue
            outcome.append(str(exc))
        first.rollback()

    thread = threading.Thread(target=one_thread, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the thread waited on its own lock"
    assert outcome == ["database is locked"]


def test_a_child_forked_while_a_thread_writes_starts_with_a_free_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _table(path)
    first = _connect(path)
    _insert(first, 1)  # this process holds the file's lock
    factory: Any = connection_factory(str(path))
    assert factory.lock.locked()
    pid = os.fork()
    if pid == 0:  # the child: the lock it inherited is a fresh one
        os._exit(0 if connection_factory(str(path)).lock.acquire(timeout=1) else 1)  # type: ignore[attr-defined]
    _, status = os.waitpid(pid, 0)
    first.rollback()
    assert os.waitstatus_to_exitcode(status) == 0
