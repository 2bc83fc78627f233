"""Releases, aliases and the history of alias moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from embedlake.catalog import journal
from embedlake.catalog.announce import SERVING, announce
from embedlake.catalog.database import Database
from embedlake.catalog.schema import alias_moves, aliases, releases
from embedlake.errors import Conflict, InputError, NotFound

ALIAS_MAX = 128  # characters (the API's schema states the same)


def check_alias(name: str) -> str:
    """An alias name, or InputError: 1 to ``ALIAS_MAX`` characters, none of them a control
    character (a name is printed by ``embedlake releases``, listed by the map, and a lake key)."""
    if not isinstance(name, str) or not 1 <= len(name) <= ALIAS_MAX:
        raise InputError(f"an alias name has 1 to {ALIAS_MAX} characters, not {len(name):,}")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InputError(f"alias name {name[:64]!r} contains a control character")
    folder = journal.alias_folder(name).rsplit("/", 1)[-1]  # its records' folder in the lake
    if len(folder) > 255:
        raise InputError(
            f"alias name {name[:64]!r} is too long once escaped for the lake ({len(folder):,} "
            "characters; at most 255): use fewer characters outside A-Z, a-z, 0-9 and -_~"
        )
    return name


@dataclass(frozen=True)
class ReleaseRecord:
    id: str
    model_id: int
    status: str
    index_id: int | None
    prefix: str
    snapshot: dict[str, Any]
    report: dict[str, Any]
    reason: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def chunker(self) -> str:
        """The key of the chunking its vectors were made with ("": whole documents, as every
        release before passages)."""
        return str(self.report.get("chunking", {}).get("key", ""))


@dataclass(frozen=True)
class AliasMove:
    alias: str
    from_release: str | None
    to_release: str
    kind: str
    actor: str
    reason: str
    at: datetime


def _release(row: Any) -> ReleaseRecord:
    return ReleaseRecord(
        row.id,
        row.model_id,
        row.status,
        row.index_id,
        row.prefix,
        row.snapshot,
        row.report,
        row.reason,
        row.created_at,
        row.finished_at,
    )


class Releases:
    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog

    def create(self, release_id: str, model_id: int, reason: str) -> ReleaseRecord:
        with self._catalog.begin() as conn:
            conn.execute(
                releases.insert().values(
                    id=release_id,
                    model_id=model_id,
                    status="building",
                    index_id=None,
                    prefix=f"releases/{release_id}",
                    snapshot={},
                    report={},
                    reason=reason,
                    created_at=datetime.now(UTC),
                )
            )
            self._journal(conn, release_id)
        return self.get(release_id)

    def get(self, release_id: str) -> ReleaseRecord:
        with self._catalog.connect() as conn:
            row = conn.execute(select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            raise NotFound(f"release {release_id!r} does not exist (see `embedlake releases`)")
        return _release(row)

    def all(self, model_id: int | None = None) -> list[ReleaseRecord]:
        query = select(releases).order_by(releases.c.created_at)
        if model_id is not None:
            query = query.where(releases.c.model_id == model_id)
        with self._catalog.connect() as conn:
            return [_release(r) for r in conn.execute(query)]

    def update(self, release_id: str, **values: Any) -> None:
        with self._catalog.begin() as conn:
            conn.execute(update(releases).where(releases.c.id == release_id).values(**values))
            self._journal(conn, release_id)
            if "index_id" in values:  # a served release's index was rebuilt: serve the new one
                announce(self._catalog, conn, SERVING)

    def merge_report(self, release_id: str, **parts: Any) -> dict[str, Any]:
        """Set ``parts`` in the release's report, keeping its other keys; the report now."""
        report = {**self.get(release_id).report, **parts}
        self.update(release_id, report=report)
        return report

    def _journal(self, conn: Connection, release_id: str) -> None:
        """The release as it now stands, for the lake (``catalog.journal``)."""
        row = conn.execute(select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            return
        record = dict(row._mapping)
        record["model"] = journal.model_ref(conn, record.pop("model_id"))
        self._catalog.journal(journal.release_key(release_id), record)

    # -- aliases ---------------------------------------------------------------------------
    def alias(self, name: str) -> str | None:
        with self._catalog.connect() as conn:
            return conn.execute(select(aliases.c.release_id).where(aliases.c.name == name)).scalar()

    def aliases(self) -> dict[str, str]:
        with self._catalog.connect() as conn:
            return {r.name: r.release_id for r in conn.execute(select(aliases))}

    def move(
        self,
        name: str,
        to_release: str,
        *,
        kind: str,
        actor: str,
        reason: str,
        expect: str | None = None,
    ) -> AliasMove:
        """Point ``name`` at ``to_release`` and record the move, in one transaction.

        ``expect`` guards against a lost update: the move is refused when the alias no longer
        points where the caller saw it.
        """
        check_alias(name)
        insert = self._catalog.insert
        now = datetime.now(UTC)
        current_of = select(aliases.c.release_id).where(aliases.c.name == name).with_for_update()
        with self._catalog.begin() as conn:
            # FOR UPDATE: on PostgreSQL a second mover waits here and then reads the first one's
            # result, so two processes publishing at once cannot both pass the `expect` check
            # (SQLite serialises writers anyway and ignores the clause).
            current = conn.execute(current_of).scalar()
            if current is None:  # a new alias: whoever inserts first creates it
                stmt = insert(aliases).values(name=name, release_id=to_release, moved_at=now)
                if conn.execute(stmt.on_conflict_do_nothing()).rowcount == 0:
                    current = conn.execute(current_of).scalar()
            if expect is not None and current != expect:
                raise Conflict(f"alias {name!r} moved to {current} meanwhile; try again")
            if current is not None:
                # compare-and-swap: pysqlite reads outside the write transaction, so there the
                # guard is this WHERE clause (a mover that lost the race changes no row)
                done = conn.execute(
                    update(aliases)
                    .where(aliases.c.name == name, aliases.c.release_id == current)
                    .values(release_id=to_release, moved_at=now)
                )
                if done.rowcount != 1:
                    raise Conflict(f"alias {name!r} moved meanwhile; try again")
            move = dict(
                alias=name,
                from_release=current,
                to_release=to_release,
                kind=kind,
                actor=actor,
                reason=reason,
                at=now,
            )
            key = conn.execute(alias_moves.insert().values(**move)).inserted_primary_key
            assert key is not None
            self._catalog.journal(journal.move_key(name, key[0]), {"id": key[0], **move})
            announce(self._catalog, conn, SERVING)  # the API's hot swap
        return AliasMove(name, current, to_release, kind, actor, reason, now)

    def history(self, name: str | None = None) -> list[AliasMove]:
        query = select(alias_moves).order_by(alias_moves.c.id)
        if name is not None:
            query = query.where(alias_moves.c.alias == name)
        with self._catalog.connect() as conn:
            return [
                AliasMove(r.alias, r.from_release, r.to_release, r.kind, r.actor, r.reason, r.at)
                for r in conn.execute(query)
            ]

    def stack(self, name: str) -> list[str]:
        """Releases the alias has stood on, oldest first, with rolled-back steps removed: the last
        is where it points, the one before is where a rollback takes it."""
        stack: list[str] = []
        for move in self.history(name):
            if move.kind == "rollback":
                stack.pop()
            else:
                stack.append(move.to_release)
        return stack
