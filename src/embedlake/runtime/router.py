"""Routing the outbox to queued invocations, without losing an event that commits late.

An event's sequence number is taken when it is inserted and the row becomes visible when its
transaction commits. On PostgreSQL, two writers can commit out of order: a reader may see 7 while
6 is still in flight, and a cursor moved to 7 would skip 6 for ever (a two-worker test lost one
file of a burst this way). So the router remembers the numbers it read past and did not see
(``Gaps``), looks for them again at every pass, and routes them when they appear. A number that
stays missing for ``GRACE`` seconds is taken as never coming: PostgreSQL also spends a number on
an insert that rolls back or meets a duplicate id (``ON CONFLICT DO NOTHING``). SQLite, one
writer at a time, has no such gaps.

The persisted cursor (``runtime_state``) is where a restarted router starts: never past a number
still waited for. Routing is idempotent (one invocation per event and function), so a restart, or
two workers routing the same events, queue nothing twice.
"""

from __future__ import annotations

import logging
import time

from embedlake.events import Event
from embedlake.functions import Functions
from embedlake.runtime.core import CURSOR, queue_invocation
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

GRACE = 300.0  # seconds a missing number is waited for: longer than any transaction should run
MAX_WAITED = 10_000  # numbers waited for at once, at most (the oldest are given up first)


class Gaps:
    """Sequence numbers read past and not seen, with when they were first missed."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self._since: dict[int, float] = {}

    def missed(self, seqs: range, now: float) -> None:
        if len(seqs) > MAX_WAITED:  # a jump of the sequence, not transactions in flight
            log.warning("outbox: %d numbers missing before #%d; waiting for the last %d only",
                        len(seqs), seqs.stop, MAX_WAITED)  # fmt: skip
            seqs = seqs[-MAX_WAITED:]
        for seq in seqs:
            self._since.setdefault(seq, now)
        if len(self._since) > MAX_WAITED:  # the oldest are given up
            keep = sorted(self._since, key=self._since.__getitem__)[-MAX_WAITED:]
            log.warning("outbox: gave up waiting for %d events (too many missing)",
                        len(self._since) - len(keep))  # fmt: skip
            self._since = {seq: self._since[seq] for seq in keep}

    def seen(self, seq: int) -> None:
        self._since.pop(seq, None)

    def waited(self, now: float) -> list[int]:
        """The numbers still waited for (older ones are given up), in order."""
        for seq in [s for s, t in self._since.items() if now - t >= self.grace]:
            log.info("outbox: event #%d never appeared in %g s; moving on", seq, self.grace)
            del self._since[seq]
        return sorted(self._since)

    def next_due(self, now: float) -> float | None:
        """Seconds until the oldest number is given up (None: nothing waited for)."""
        if not self._since:
            return None
        return max(0.0, min(self._since.values()) + self.grace - now)


class Router:
    """Routes new outbox events (and late ones) to queued invocations, one transaction a batch."""

    def __init__(self, ws: Workspace, functions: Functions, *, limit: int = 500) -> None:
        self.ws, self.functions, self.limit = ws, functions, limit
        self.gaps = Gaps()
        self._last: int | None = None  # the highest number read; from the cursor at first
        self._saved: int | None = None  # the cursor as this router last wrote or read it

    @property
    def last(self) -> int | None:
        """The highest sequence number read so far (None before the first pass)."""
        return self._last

    def route(self) -> int:
        """Route every event not routed yet; returns how many were routed."""
        events = self.ws.catalog.events
        now = time.monotonic()
        routed = 0
        waited = self.gaps.waited(now)
        if waited:
            with self.ws.catalog.begin():
                late = events.at(waited)
                for _, event in late:
                    self._queue(event)
            for seq, _ in late:  # once committed: a rolled-back pass looks again
                self.gaps.seen(seq)
            routed += len(late)
        while True:
            last = self._last
            with self.ws.catalog.begin():
                if last is None:
                    last = self._saved = int(events.get_state(CURSOR, "0"))
                batch = events.after(last, limit=self.limit)
                for seq, event in batch:
                    self.gaps.missed(range(last + 1, seq), now)
                    self._queue(event)
                    last = seq
                waiting = self.gaps.waited(now)
                cursor = waiting[0] - 1 if waiting else last
                if cursor != self._saved:  # written on change only, not read back every pass
                    events.set_state(CURSOR, str(cursor))
            self._last, self._saved = last, cursor  # once committed: a rollback reads again
            routed += len(batch)
            if len(batch) < self.limit:
                return routed

    def _queue(self, event: Event) -> None:
        for spec in self.functions.matching(event):
            queue_invocation(self.ws, event, spec)
