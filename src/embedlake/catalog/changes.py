"""A cheap, exact answer to "has anything been committed to the catalog since I last looked?",
for what a serving process keeps in memory from the catalog (titles and snippets of search
results, search/summaries.py) and must drop when a document is deleted or changed.

SQLite: ``PRAGMA data_version`` on a connection of our own that never writes. Its value changes
whenever another connection (of this process or any other: the CLI, another API worker, the
runtime) commits a change to the database file, and a commit is counted by the time it returns.
It costs ~3 µs, no I/O (it reads the WAL index in shared memory), so it is asked on every search:
no staleness at all. It changes on *any* commit (events, runs, keys), not only documents: what is
kept is then dropped more often than needed, never kept too long.

Elsewhere (PostgreSQL, or an in-memory SQLite catalog, which no other connection can see)
:func:`watch` gives None: there is no cheap exact signal there (a ``NOTIFY`` arrives after the
commit, so a search could still show a document whose delete had returned), and callers read the
catalog on every request as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)


class DataVersion:
    """``PRAGMA data_version`` of a SQLite file, from a connection that only ever asks that."""

    def __init__(self, path: str) -> None:
        # autocommit (isolation_level None): the PRAGMA opens no transaction that would pin a
        # snapshot; shared by the serving threads, one at a time
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """The version now; None once closed (the caller then reads the catalog itself)."""
        with self._lock:
            if self._conn is None:
                return None
            row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def watch(engine: Engine) -> DataVersion | None:
    """The change counter of ``engine``'s database, or None where there is no cheap exact one."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    # a URI filename (``file:...?mode=ro``) would be opened here as a plain name, a file of its
    # own whose version never moves: no cache for those, rather than a stale one
    if path in (None, "", ":memory:") or path.startswith("file:") or engine.url.query.get("uri"):
        return None
    return DataVersion(path)
