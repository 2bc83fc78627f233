"""What a result list shows of each hit (title, snippet, source), held in memory for a release's
searches, so that a search by vector asks the catalog nothing.

Reading ~20 rows of the catalog per search cost as much as the HNSW search itself on 100k
documents (docs/benchmarks.md, section 8). The copy here is trusted only while the catalog is
unchanged since it was read, so a deleted document never comes back and an updated one shows its
new title at once:

- SQLite: ``PRAGMA data_version`` on a connection of the store's own (about a microsecond) changes
  whenever any other connection, of this process or another, commits. Once it has changed,
  searches read the catalog again, as they did before this store, until a reload in a background
  thread has caught up (at most one reload at a time, and never more than ``RELOAD_SHARE`` of the
  time: an ingest that commits all day leaves searches on the catalog, not the CPU on reloads).
- The copy is read from the second search on (in the background: searches read the catalog until
  it is ready), not when a release is loaded, so a one-off search (``embedlake search``) pays
  nothing for it.
- A catalog with no check this cheap (PostgreSQL, an in-memory SQLite) is always read: no copy.

See docs/decisions/0020-http-search-snippets.md.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from sqlalchemy import Engine, func, select

from embedlake.catalog.schema import documents as t

log = logging.getLogger(__name__)

HEAD_CHARS = 400  # what a snippet is cut from (as Documents.summaries reads)
SNIPPET_CHARS = 200
RELOAD_SHARE = 0.1  # reloads take at most this share of the wall time
RELOAD_MIN_GAP = 1.0  # seconds between two reloads, at least


# every live document's id, title, source and the start of its text
_LIVE = select(t.c.id, t.c.title, t.c.source, func.substr(t.c.text, 1, HEAD_CHARS)).where(
    t.c.deleted_at.is_(None)
)


class Shown(NamedTuple):
    """What a hit shows of its document."""

    title: str
    snippet: str
    source: str


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text``, white space collapsed, cut at a word under ``limit`` characters."""
    text = " ".join(text[: limit * 2].split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


class SqliteVersion:
    """``PRAGMA data_version`` of a SQLite file, on a connection used for nothing else: it differs
    from one call to the next exactly when another connection has committed in between."""

    def __init__(self, path: str) -> None:
        # never written through; check_same_thread off because searches run on a pool (the lock
        # serialises the calls, each a microsecond)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def version_check(engine: Engine) -> SqliteVersion | None:
    """A cheap check for changes to the catalog behind ``engine``, or None where there is none."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):  # a URI filename: not worth the parsing
        return None
    return SqliteVersion(url.database)


class Snippets:
    """Title, snippet and source of every live document, for as long as the catalog is unchanged.

    ``shown(ids)`` answers from memory when the copy is current, and None when it may not be
    (the caller reads the catalog, as it would without this store)."""

    def __init__(self, engine: Engine, version: Callable[[], int] | None) -> None:
        self._engine = engine
        self._version = version
        # (the version the entries were read at, the entries): swapped whole, read once per call
        self._state: tuple[int, dict[str, Shown]] | None = None
        self._reloading = threading.Lock()
        self._not_before = 0.0
        self._asked = 0

    @classmethod
    def of(cls, engine: Engine) -> Snippets:
        return cls(engine, version_check(engine))

    @property
    def enabled(self) -> bool:
        return self._version is not None

    def shown(self, ids: Iterable[str]) -> dict[str, Shown] | None:
        """What each live document among ``ids`` shows (deleted and unknown ids are absent), or
        None when the catalog changed since the copy was read."""
        if self._version is None:
            return None
        state = self._state
        if state is None:
            self._asked += 1
            if self._asked > 1:
                self._reload_soon()
            return None
        if self._version() != state[0]:
            self._reload_soon()
            return None
        entries = state[1]
        return {d: entries[d] for d in ids if d in entries}

    def reload(self) -> None:
        """Read the live documents again, now, in this thread."""
        assert self._version is not None
        started = time.monotonic()
        # the version first: a commit from here on makes the next check differ from it, and the
        # read below starts after it, so it sees every commit the version counts
        at = self._version()
        entries: dict[str, Shown] = {}
        sources: dict[str, str] = {}  # one string per source, not one per document
        with self._engine.connect() as conn:
            for doc_id, title, source, head in conn.execute(_LIVE):
                source = sources.setdefault(source, sys.intern(source))
                entries[doc_id] = Shown(title, snippet(head), source)
        self._state = (at, entries)
        took = time.monotonic() - started
        self._not_before = time.monotonic() + max(RELOAD_MIN_GAP, took / RELOAD_SHARE)
        log.debug("snippets: %d documents read in %.2f s", len(entries), took)

    def _reload_soon(self) -> None:
        """One reload in the background, when the last one is far enough behind."""
        if not self._reloading.acquire(blocking=False):
            return  # one is under way
        threading.Thread(target=self._background, name="snippets-reload", daemon=True).start()

    def _background(self) -> None:
        try:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.reload()
        except Exception:  # a failed reload leaves searches on the catalog; the next may succeed
            log.exception("snippets: reload failed")
        finally:
            self._reloading.release()

    def close(self) -> None:
        close = getattr(self._version, "close", None)
        if close is not None:
            close()
