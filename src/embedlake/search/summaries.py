"""What a search result shows of a document (title, snippet, source), held in memory between
searches, and dropped as soon as anything is committed to the catalog.

Hydrating ~20 ids per search from the catalog cost ~0.23 ms of a 0.75 ms search on a
100k-document SQLite catalog (bench/api.py), a third of a by-vector request's budget. The
documents a workload returns repeat, so a serving process keeps the ones it showed, at most
``capacity`` (least recently used dropped first: the bound for a catalog of millions), and the ids
the catalog no longer has (deleted: tombstones stay in an index until it is rebuilt).

Tombstones are followed exactly: before every lookup the catalog's change counter is asked
(catalog/changes.py, ~3 µs on SQLite); any commit since the last lookup, by this process or
another, empties the cache, so a document deleted before a search began is never shown by it.
Where there is no such counter (PostgreSQL), every lookup reads the catalog, as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

from embedlake.catalog.changes import DataVersion
from embedlake.catalog.documents import Documents


class Shown(NamedTuple):
    title: str
    snippet: str
    source: str


_GONE = Shown("", "", "")  # kept for an id the catalog has no live document of


class Summaries:
    """Live documents' ``Shown`` by id: from memory when the catalog has not changed, else read."""

    def __init__(
        self, documents: Documents, changes: DataVersion | None = None, capacity: int = 0
    ) -> None:
        """``changes``: the catalog's change counter (None or ``capacity`` 0: no cache)."""
        self._documents = documents
        self._changes = changes if capacity > 0 else None
        self._capacity = capacity
        self._kept: OrderedDict[str, Shown] = OrderedDict()
        self._version: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, ids: Sequence[str]) -> dict[str, Shown]:
        """The live documents among ``ids`` (deleted or unknown ones absent)."""
        version = self._changes.current() if self._changes is not None else None
        if version is None:
            return self._read(ids)
        found: dict[str, Shown] = {}
        missing: list[str] = []
        with self._lock:
            if version != self._version:  # something was committed: forget everything
                self._kept.clear()
                self._version = version
            kept = self._kept
            for doc_id in ids:
                shown = kept.get(doc_id)
                if shown is None:
                    missing.append(doc_id)
                else:
                    kept.move_to_end(doc_id)
                    if shown is not _GONE:
                        found[doc_id] = shown
        if missing:
            read = self._read(missing)
            found.update(read)
            with self._lock:
                # Kept only if no thread has seen a newer version since ``version`` was read:
                # what was read may predate a commit that the newer version stands for. A commit
                # after this read that nobody has looked for yet is seen by the next lookup.
                if self._version == version:
                    for doc_id in missing:
                        kept[doc_id] = read.get(doc_id, _GONE)
                    while len(kept) > self._capacity:
                        kept.popitem(last=False)
        return found

    def _read(self, ids: Sequence[str]) -> dict[str, Shown]:
        rows = self._documents.summaries(list(dict.fromkeys(ids)))
        return {d: Shown(s.title, snippet(s.head), s.source) for d, s in rows.items()}

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()


def snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text[: limit * 2].split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
