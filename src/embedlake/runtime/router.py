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
two workers routing the same events, queue nothing twice. A router that lives for one pass (the
AWS dispatcher, one Lambda call each) persists the numbers it waits for, with when each was first
missed, beside the cursor (``persist``): else every call would start the grace anew and the cursor
would wait below a rolled-back number for ever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from embedlake.events import Event
from embedlake.functions import Functions, FunctionSpec
from embedlake.runtime.core import CURSOR, invocation_id
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

GRACE = 300.0  # seconds a missing number is waited for: longer than any transaction should run
MAX_WAITED = 10_000  # numbers waited for at once, at most (the oldest are given up first)
WAITED = "dispatch.waited"  # runtime_state: {number: first missed, unix seconds}, when persisted

Start = Callable[[FunctionSpec, Event, str], object]
"""Starts an invocation the router queued: ``start(spec, event, invocation id)``."""


class Gaps:
    """Sequence numbers read past and not seen, with when they were first missed (wall-clock
    seconds, so that another process can carry on from a saved copy)."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self._since: dict[int, float] = {}

    def dumps(self) -> str:
        return json.dumps({str(seq): t for seq, t in sorted(self._since.items())})

    @classmethod
    def loads(cls, text: str, grace: float = GRACE) -> Gaps:
        gaps = cls(grace)
        gaps._since = {int(seq): float(t) for seq, t in json.loads(text or "{}").items()}
        return gaps

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
    """Routes new outbox events (and late ones) to queued invocations, one transaction a batch;
    ``start`` (optional) is called for each invocation queued, once its batch committed."""

    def __init__(
        self,
        ws: Workspace,
        functions: Functions,
        *,
        limit: int = 500,
        persist: bool = False,
        start: Start | None = None,
    ) -> None:
        self.ws, self.functions, self.limit = ws, functions, limit
        self.persist, self.start = persist, start
        self.gaps = Gaps()
        self._last: int | None = None  # the highest number read; from the cursor at first
        self._saved: int | None = None  # the cursor as this router last wrote or read it
        self._saved_gaps = "{}"  # the waited numbers as last written or read (persist)

    @property
    def last(self) -> int | None:
        """The highest sequence number read so far (None before the first pass)."""
        return self._last

    def route(self, max_batches: int | None = None) -> int:
        """Route every event not routed yet (or ``max_batches`` batches of them); returns how
        many were routed."""
        events = self.ws.catalog.events
        now = time.time()
        routed = 0
        if self.persist and self._last is None:  # the first pass: carry on from the saved one
            self._saved_gaps = events.get_state(WAITED, "{}")
            self.gaps = Gaps.loads(self._saved_gaps, self.gaps.grace)
        waited = self.gaps.waited(now)
        if waited:
            with self.ws.catalog.begin():
                late = events.at(waited)
                queued = self._queue([event for _, event in late])
            for seq, _ in late:  # once committed: a rolled-back pass looks again
                self.gaps.seen(seq)
            self._started(queued)
            routed += len(late)
        while True:
            last = self._last
            with self.ws.catalog.begin():
                if last is None:
                    last = self._saved = int(events.get_state(CURSOR, "0"))
                batch = events.after(last, limit=self.limit)
                for seq, _ in batch:
                    self.gaps.missed(range(last + 1, seq), now)
                    last = seq
                queued = self._queue([event for _, event in batch])
                waiting = self.gaps.waited(now)
                cursor = waiting[0] - 1 if waiting else last
                if cursor != self._saved:  # written on change only, not read back every pass
                    events.set_state(CURSOR, str(cursor))
                gaps = self.gaps.dumps() if self.persist else self._saved_gaps
                if gaps != self._saved_gaps:
                    events.set_state(WAITED, gaps)
            # once committed: a rollback reads again
            self._last, self._saved, self._saved_gaps = last, cursor, gaps
            self._started(queued)
            routed += len(batch)
            if max_batches is not None:
                max_batches -= 1
            if len(batch) < self.limit or max_batches == 0:
                return routed

    def _queue(self, batch: list[Event]) -> list[tuple[FunctionSpec, Event]]:
        """Queue the events' invocations, in one statement; those new (a repeated delivery
        finds them queued)."""
        wanted = {
            invocation_id(event, spec): (spec, event)
            for event in batch
            for spec in self.functions.matching(event)
        }
        new = self.ws.catalog.events.invocations_queued(
            [(run_id, spec.name, event.id) for run_id, (spec, event) in wanted.items()]
        )
        return [pair for run_id, pair in wanted.items() if run_id in new]

    def _started(self, queued: list[tuple[FunctionSpec, Event]]) -> None:
        if self.start is not None:
            for spec, event in queued:
                self.start(spec, event, invocation_id(event, spec))
