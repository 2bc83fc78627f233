"""The event outbox, the lake objects seen, the runtime's cursor and the invocation log.

Work for the runtime (an event added, an invocation queued) is announced on
:data:`~embedlake.catalog.announce.WORK` when its transaction commits, so that a sleeping
runtime wakes on work instead of polling (catalog/announce.py, catalog/wake.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, and_, bindparam, func, or_, select, update

from embedlake.catalog.announce import WORK, announce
from embedlake.catalog.database import Database
from embedlake.catalog.schema import events, invocations, lake_objects, runtime_state
from embedlake.errors import NotFound
from embedlake.events import Event
from embedlake.lake import ObjectEvent

# Statements the dispatcher sends on every pass, built once: building and keying a statement
# cost more CPU than sending it (the claim's, in a profile of a burst of no-op invocations).
_inv = invocations.c
_OLDEST_QUEUED = (
    select(_inv.id)
    .where(_inv.function == bindparam("function"), _inv.status == "queued")
    .order_by(_inv.enqueued_at)
    .limit(bindparam("n", type_=Integer))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    update(invocations)
    .where(_inv.id.in_(bindparam("ids", expanding=True)), _inv.status == "queued")
    .values(
        status="running",
        attempts=1,
        started_at=bindparam("claimed_at"),
        finished_at=None,
        executor=bindparam("claimed_by"),
    )
    .returning(_inv.id, _inv.function, _inv.event_id)
)
_SEQ_OF = select(events.c.seq).where(events.c.id == bindparam("event_id"))
_EVENTS_BY_ID = select(events).where(events.c.id.in_(bindparam("ids", expanding=True)))
_AFTER = (
    select(events)
    .where(events.c.seq > bindparam("seq"))
    .order_by(events.c.seq)
    .limit(bindparam("limit", type_=Integer))
)
_FINISH = (
    update(invocations)
    .where(_inv.id == bindparam("run_id"))
    .values(
        status=bindparam("ended_as"),
        error=bindparam("failure"),
        finished_at=bindparam("ended_at"),
        seconds=bindparam("took"),
    )
)


@dataclass(frozen=True)
class Invocation:
    id: str
    function: str
    event_id: str
    status: str
    attempts: int
    error: str | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None


class Events:
    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog
        self._postgres = catalog.engine.dialect.name == "postgresql"
        # the dialect's upserts, built once (see _CLAIM)
        insert = catalog.insert
        self._add = (
            insert(events).on_conflict_do_nothing(index_elements=["id"]).returning(events.c.seq)
        )
        self._queue = (
            insert(invocations)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(invocations.c.id)
        )
        state = insert(runtime_state)
        self._set_state = state.on_conflict_do_update(
            index_elements=["key"], set_={"value": state.excluded.value}
        )

    def _announce(self, conn: Connection) -> None:
        """Tell the runtime there is work, once this transaction commits."""
        announce(self._catalog, conn, WORK)

    # -- the outbox --------------------------------------------------------------------------
    def add(self, event: Event) -> bool:
        """Persist an event; an event id seen before is ignored (False)."""
        row = {
            "id": event.id,
            "type": event.type,
            "subject": event.subject,
            "time": event.time,
            "data": event.data,
        }
        # RETURNING, not rowcount: PostgreSQL inserts into a table with a serial key return the
        # key implicitly, and then the driver reports no row count
        with self._catalog.begin() as conn:
            # on PostgreSQL a repeated delivery is answered before the INSERT: an insert that
            # meets the id spends a sequence number all the same, a gap the runtime's router
            # would wait on (runtime/router.py); the conflict clause covers a concurrent twin.
            # SQLite spends no number on a conflict: no extra query there
            if self._postgres and conn.execute(_SEQ_OF, {"event_id": event.id}).first():
                return False
            added = conn.execute(self._add, row).first()
            if added is not None:
                self._announce(conn)
        return added is not None

    def add_object_event(self, event: ObjectEvent) -> None:
        """The lake's subscriber: record the event and remember the object as seen."""
        with self._catalog.begin():
            self.add(
                Event(
                    type=event.type,
                    subject=event.key,
                    data={"size": event.size, "etag": event.etag},
                    id=event.id,
                    time=event.time,
                )
            )
            if event.type == "object.created":
                self.mark_seen(event.key, event.etag, event.size)
            else:
                self.forget_seen(event.key)

    def after(self, seq: int, limit: int = 500) -> list[tuple[int, Event]]:
        with self._catalog.connect() as conn:
            rows = conn.execute(_AFTER, {"seq": seq, "limit": limit})
            return [(r.seq, Event(r.type, r.subject, r.data, r.id, _utc(r.time))) for r in rows]

    def at(self, seqs: list[int]) -> list[tuple[int, Event]]:
        """The events of these sequence numbers that are visible now, in order."""
        if not seqs:
            return []
        with self._catalog.connect() as conn:
            rows = conn.execute(select(events).where(events.c.seq.in_(seqs)).order_by(events.c.seq))
            return [(r.seq, Event(r.type, r.subject, r.data, r.id, _utc(r.time))) for r in rows]

    def get(self, event_id: str) -> Event:
        with self._catalog.connect() as conn:
            r = conn.execute(select(events).where(events.c.id == event_id)).first()
        if r is None:
            raise NotFound(f"event {event_id!r} does not exist")
        return Event(r.type, r.subject, r.data, r.id, _utc(r.time))

    def all(self) -> list[Event]:
        return [e for _, e in self.after(0, limit=1_000_000)]

    def latest_seq(self) -> int:
        with self._catalog.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())

    # -- objects seen -------------------------------------------------------------------------
    def mark_seen(self, key: str, etag: str, size: int) -> None:
        insert = self._catalog.insert
        stmt = insert(lake_objects).values(key=key, etag=etag, size=size, seen_at=datetime.now(UTC))
        with self._catalog.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["key"],
                    set_=dict(
                        etag=stmt.excluded.etag,
                        size=stmt.excluded.size,
                        seen_at=stmt.excluded.seen_at,
                    ),
                )
            )

    def forget_seen(self, key: str) -> None:
        with self._catalog.begin() as conn:
            conn.execute(lake_objects.delete().where(lake_objects.c.key == key))

    def seen(self, prefix: str = "") -> dict[str, tuple[str, int]]:
        """key → (etag, size) of every object seen under ``prefix``."""
        with self._catalog.connect() as conn:
            rows = conn.execute(select(lake_objects).where(lake_objects.c.key.startswith(prefix)))
            return {r.key: (r.etag, r.size) for r in rows}

    # -- runtime state ------------------------------------------------------------------------
    def get_state(self, key: str, default: str = "") -> str:
        with self._catalog.connect() as conn:
            value = conn.execute(
                select(runtime_state.c.value).where(runtime_state.c.key == key)
            ).scalar()
        return default if value is None else str(value)

    def set_state(self, key: str, value: str) -> None:
        with self._catalog.begin() as conn:
            conn.execute(self._set_state, {"key": key, "value": value})

    # -- invocations --------------------------------------------------------------------------
    def invocation_queued(self, run_id: str, function: str, event_id: str) -> bool:
        """Record an invocation; False when it was recorded before (a repeated delivery)."""
        return bool(self.invocations_queued([(run_id, function, event_id)]))

    def invocations_queued(self, rows: list[tuple[str, str, str]]) -> set[str]:
        """Record invocations (id, function, event id) in one statement; the ids that are new
        (one recorded before is a repeated delivery, left as it is)."""
        if not rows:
            return set()
        now = datetime.now(UTC)
        values = [
            {"id": run_id, "function": function, "event_id": event_id, "status": "queued",
             "attempts": 0, "enqueued_at": now}
            for run_id, function, event_id in rows
        ]  # fmt: skip
        with self._catalog.begin() as conn:  # RETURNING, as in add(): rowcount is unreliable
            # one statement for the lot: SQLAlchemy's "insertmanyvalues" pages the rows
            added = set(conn.execute(self._queue, values).scalars())
            if added:
                self._announce(conn)
        return added

    def invocation_update(self, run_id: str, **values: Any) -> None:
        with self._catalog.begin() as conn:
            conn.execute(update(invocations).where(invocations.c.id == run_id).values(**values))

    def claim_invocation(self, run_id: str, stale_after: float) -> int | None:
        """Mark the invocation running, with one attempt more, unless it finished or runs elsewhere;
        the attempt, or None. One conditional UPDATE, so two runners racing for one invocation
        (a repeated delivery, two dispatchers) cannot both claim it. A claim older than
        ``stale_after`` seconds is a runner that died: it may be claimed again."""
        c, now = invocations.c, datetime.now(UTC)
        stale = and_(c.status == "running", c.started_at < now - timedelta(seconds=stale_after))
        stmt = (
            update(invocations)
            .where(c.id == run_id, or_(c.status.in_(["queued", "retrying", "dead"]), stale))
            .values(status="running", attempts=c.attempts + 1, started_at=now, finished_at=None)
            .returning(c.attempts)
        )
        with self._catalog.begin() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else int(row[0])

    def claim_queued(
        self, slots: dict[str, int], executor: str
    ) -> tuple[datetime, list[tuple[str, str, Event]]]:
        """Mark up to ``slots[function]`` queued invocations of each function running, oldest
        first, in one transaction, claimed by ``executor`` (the worker's id: after a crash it
        takes back what it claimed, see ``unfinished``); the claim's time and (invocation id,
        function, event) of each claimed. On
        PostgreSQL the rows are locked with SKIP LOCKED: workers claiming at once share the
        queue instead of waiting on each other; an UPDATE that lost a race claims nothing."""
        now = datetime.now(UTC)
        claimed: list[tuple[str, str, str]] = []
        if not any(n > 0 for n in slots.values()):  # every slot taken: not even a transaction
            return now, []
        with self._catalog.begin() as conn:
            for function, n in slots.items():
                if n <= 0:
                    continue
                # two statements, not UPDATE … WHERE id IN (SELECT … LIMIT n): PostgreSQL may
                # run such a subquery more than once and update more than n rows
                oldest = list(
                    conn.execute(_OLDEST_QUEUED, {"function": function, "n": n}).scalars()
                )
                if not oldest:
                    continue
                values = {"ids": oldest, "claimed_at": now, "claimed_by": executor}
                claimed += [(r.id, r.function, r.event_id) for r in conn.execute(_CLAIM, values)]
            if not claimed:
                return now, []
            found = conn.execute(_EVENTS_BY_ID, {"ids": list({e for _, _, e in claimed})})
            by_id = {r.id: Event(r.type, r.subject, r.data, r.id, _utc(r.time)) for r in found}
        return now, [(run_id, function, by_id[e]) for run_id, function, e in claimed]

    def unfinished(self, executor: str) -> list[tuple[str, str, Event]]:
        """Invocations ``executor`` claimed (or that were claimed before claims named their
        worker) that are running or retrying: (id, function, event)."""
        c, e = invocations.c, events.c
        query = (
            select(c.id.label("run_id"), c.function, e.id, e.type, e.subject, e.data, e.time)
            .join(events, e.id == c.event_id)
            .where(
                c.status.in_(["running", "retrying"]),
                or_(c.executor == executor, c.executor.is_(None)),
            )
        )
        with self._catalog.connect() as conn:
            return [
                (r.run_id, r.function, Event(r.type, r.subject, r.data, r.id, _utc(r.time)))
                for r in conn.execute(query)
            ]

    def finish_invocation(
        self, run_id: str, status: str, error: str | None, started: datetime | None = None
    ) -> None:
        """Record how the invocation ended, and its duration since it was started (one
        transaction; the start is read from the record unless the caller knows it)."""
        now = datetime.now(UTC)
        c = invocations.c
        with self._catalog.begin() as conn:
            if started is None:
                started = conn.execute(select(c.started_at).where(c.id == run_id)).scalar()
            seconds = (now - (now if started is None else _utc(started))).total_seconds()
            values = {"run_id": run_id, "ended_as": status, "failure": error}
            conn.execute(_FINISH, {**values, "ended_at": now, "took": seconds})

    def invocation(self, run_id: str) -> Invocation:
        found = self.invocations(ids=[run_id])
        if not found:
            raise NotFound(f"invocation {run_id!r} does not exist (see `embedlake runs`)")
        return found[0]

    def invocations(
        self,
        *,
        function: str | None = None,
        status: str | None = None,
        ids: list[str] | None = None,
        limit: int = 10_000,
    ) -> list[Invocation]:
        query = select(invocations).order_by(invocations.c.enqueued_at.desc()).limit(limit)
        if function:
            query = query.where(invocations.c.function == function)
        if status:
            query = query.where(invocations.c.status == status)
        if ids is not None:
            query = query.where(invocations.c.id.in_(ids))
        with self._catalog.connect() as conn:
            return [
                Invocation(
                    r.id,
                    r.function,
                    r.event_id,
                    r.status,
                    r.attempts,
                    r.error,
                    _utc(r.enqueued_at),
                    _opt(r.started_at),
                    _opt(r.finished_at),
                    r.seconds,
                )
                for r in conn.execute(query)
            ]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)
