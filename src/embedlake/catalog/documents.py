"""Documents: upsert by id and content hash, tombstones, streaming reads, and the ingest runs that
wrote them."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Float,
    String,
    any_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.types import TypeEngine

from embedlake.catalog.database import Database
from embedlake.catalog.schema import counts, ingest_runs
from embedlake.catalog.schema import documents as t
from embedlake.errors import InputError, NotFound

# SQLite allows 32k bound parameters; stay well below for IN (...) lists.
_IN_CHUNK = 900
# a new document's columns, in the order upsert gives them (deleted_at stays NULL)
_INSERTED = ("id", "source", "title", "text", "metadata", "content_hash")


def content_hash(title: str, text: str) -> str:
    """Hash of what an encoder sees: a changed title or text means a new vector is needed."""
    return hashlib.sha256(f"{title}\x00{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def content_hash(self) -> str:
        return content_hash(self.title, self.text)

    @cached_property
    def metadata_json(self) -> str:
        """The metadata as JSON text: how the catalog and the curated log store it."""
        return _JSON.encode(self.metadata)

    @property
    def full_text(self) -> str:
        """The text an encoder embeds: title and body."""
        return full_text(self.title, self.text)


def full_text(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title else text


class Content(NamedTuple):
    """What an encoder embeds of a document, and the hash the catalog keeps of it: no metadata
    decoded, no hash computed again (an embedding shard reads thousands)."""

    id: str
    title: str
    text: str
    content_hash: str

    @property
    def full_text(self) -> str:
        return full_text(self.title, self.text)


_JSON = json.JSONEncoder(ensure_ascii=False)  # built once: json.dumps(**options) builds one a call

# built once: this runs for every search, and building a statement costs more than running it
_SUMMARIES = select(
    t.c.id, t.c.title, t.c.source, func.substr(t.c.text, 1, bindparam("chars")).label("head")
).where(t.c.id.in_(bindparam("ids", expanding=True)), t.c.deleted_at.is_(None))


class Summary(NamedTuple):
    title: str
    source: str
    head: str  # the text's first characters


@dataclass
class UpsertResult:
    inserted: list[Document] = field(default_factory=list)
    updated: list[Document] = field(default_factory=list)
    unchanged: int = 0
    # ids that already belong to another source: refused, never overwritten
    conflicts: list[tuple[Document, str]] = field(default_factory=list)


Scalar = str | int | float | bool


def pairs_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of ``json.dumps(list(pairs))``, fed a pair at a time (the list is never built)."""
    digest = hashlib.sha256(b"[")
    for n, pair in enumerate(pairs):
        digest.update((", " if n else "").encode() + json.dumps(list(pair)).encode())
    digest.update(b"]")
    return digest.hexdigest()


def _in(column: Any, values: Sequence[Any], kind: TypeEngine[Any], dialect: str) -> Any:
    """``column`` equals one of ``values``, with the list bound as one parameter however long it
    is: an array on PostgreSQL, a JSON array read by ``json_each`` on SQLite. (An OR per value
    nests one level per value, which SQLite refuses past 1,000; a placeholder per value stops at
    32,766 on SQLite and 65,535 on PostgreSQL.)"""
    if dialect == "postgresql":
        return column == any_(literal(list(values), ARRAY(kind)))
    listed = func.json_each(literal(json.dumps(list(values)))).table_valued("value")
    return column.in_(select(listed.c.value))


def _numbers(values: Sequence[Scalar]) -> list[float]:
    """The numbers among ``values`` as floats, without those no JSON number equals (NaN, the
    infinities, integers past a float's range): they match nothing."""
    out: dict[float, None] = {}
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                continue
            if math.isfinite(number):
                out[number] = None
    return list(out)


def check_filter_field(key: str, values: Sequence[Any]) -> None:
    """Refuse (InputError) a filter field the catalog cannot address exactly: a name with a
    double quote, a backslash or a control character (SQLite reads the name inside a quoted JSON
    path, where ``"`` would end it and let the rest address a nested field, and a backslash is
    compared as stored, escaped), a string value with a NUL (SQLite's JSON functions end a string
    there; PostgreSQL refuses NUL in text)."""
    if '"' in key or "\\" in key or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in key):
        raise InputError(
            f"filter field {key[:64]!r}: a field name may not contain a double quote, a "
            "backslash or a control character"
        )
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise InputError(f"filter field {key[:64]!r}: a value may not contain a NUL character")


def _matches(key: str, values: Sequence[Scalar], dialect: str) -> Any:
    """One filter condition: the field equals any of ``values``, grouped by kind (strings,
    numbers, booleans), each kind one ``IN`` over fields of that JSON type only (``"5"`` does
    not match the number 5, nor ``1`` the boolean true)."""
    check_filter_field(key, values)
    if key == "source":  # a string: a number or a boolean matches no source
        names = list(dict.fromkeys(v for v in values if isinstance(v, str)))
        return _in(t.c.source, names, String(), dialect) if names else false()
    field = t.c.metadata[key]
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    numbers = _numbers(values)
    booleans = sorted({v for v in values if isinstance(v, bool)})
    # Cast only values of the right JSON type: PostgreSQL fails the whole query on casting "n/a"
    # to a number. CASE, not AND: SQL does not promise to evaluate AND's operands in order.
    if dialect == "postgresql":
        kind = func.json_typeof(field)
        is_bool, is_number = kind.in_(("boolean",)), kind.in_(("number",))
        is_string = kind.in_(("string",))
    else:
        kind = func.json_type(t.c.metadata, f'$."{key}"')
        is_bool, is_number = kind.in_(("true", "false")), kind.in_(("integer", "real"))
        is_string = kind.in_(("text",))
    alternatives = []
    if strings:
        alternatives.append(_in(case((is_string, field.as_string())), strings, String(), dialect))
    if numbers:
        alternatives.append(_in(case((is_number, field.as_float())), numbers, Float(), dialect))
    if booleans:
        alternatives.append(case((is_bool, field.as_boolean())).in_(booleans))
    return or_(false(), *alternatives)


# the live documents: the count the database keeps (migration 0006)
_LIVE = select(counts.c.value).where(counts.c.name == "documents")


class Documents:
    # what an index engine that joins the documents in SQL (pgvector) names in its queries
    table_name = t.name

    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog

    def upsert(
        self,
        docs: Sequence[Document],
        before_commit: Callable[[UpsertResult], object] | None = None,
    ) -> UpsertResult:
        """Insert new ids, update changed ones, leave identical ones untouched; one transaction.

        ``before_commit`` runs inside the transaction once the changes are known (the ingest
        pipeline writes its Parquet log there); if it raises, nothing is committed.
        """
        result = UpsertResult()
        if not docs:
            return result
        latest = {d.id: d for d in docs}  # within a batch, the last row of an id wins
        now = datetime.now(UTC)
        with self._catalog.begin() as conn:
            dialect = self._catalog.engine.dialect.name
            rows = conn.execute(
                select(t.c.id, t.c.content_hash, t.c.metadata, t.c.deleted_at, t.c.source).where(
                    _in(t.c.id, list(latest), String(), dialect)
                )
            )
            existing = {r.id: (r.content_hash, r.metadata, r.deleted_at, r.source) for r in rows}
            new_rows, changed = [], []
            for doc in latest.values():
                old = existing.get(doc.id)
                if old is None:
                    stored = (doc.metadata_json, doc.content_hash)
                    new_rows.append((doc.id, doc.source, doc.title, doc.text, *stored))
                    result.inserted.append(doc)
                elif old[3] != doc.source:
                    result.conflicts.append((doc, old[3]))
                elif old[0] == doc.content_hash and old[1] == doc.metadata and old[2] is None:
                    result.unchanged += 1
                else:
                    changed.append(
                        dict(
                            id=doc.id,
                            title=doc.title,
                            text=doc.text,
                            metadata=doc.metadata,
                            content_hash=doc.content_hash,
                            updated_at=now,
                            deleted_at=None,
                        )
                    )
                    result.updated.append(doc)
            if new_rows:
                stamps = {"created_at": now, "updated_at": now}
                self._catalog.insert_rows(conn, t, _INSERTED, new_rows, stamps)
            for row in changed:
                conn.execute(update(t).where(t.c.id == row["id"]).values(**row))
            if before_commit is not None:
                before_commit(result)
        return result

    def get(self, doc_id: str, *, include_deleted: bool = False) -> Document:
        with self._catalog.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == doc_id)).first()
        if row is None or (row.deleted_at is not None and not include_deleted):
            raise NotFound(f"document {_shown(doc_id)} does not exist")
        return Document(row.id, row.source, row.title, row.text, row.metadata)

    def get_many(self, ids: Sequence[str]) -> dict[str, Document]:
        """Live documents among ``ids`` (missing or deleted ones are absent)."""
        rows = self._live_among(tuple(t.c), ids)
        return {r.id: Document(r.id, r.source, r.title, r.text, r.metadata) for r in rows}

    def sources(self, ids: Sequence[str]) -> dict[str, str]:
        """The source of each of ``ids`` the catalog has, deleted ones included (an id belongs
        to its source for good: ingest refuses it from another)."""
        with self._catalog.connect() as conn:
            dialect = self._catalog.engine.dialect.name
            rows = conn.execute(
                select(t.c.id, t.c.source).where(_in(t.c.id, list(ids), String(), dialect))
            )
            return {r.id: r.source for r in rows}

    def contents(self, ids: Sequence[str]) -> dict[str, Content]:
        """Title, text and content hash of the live documents among ``ids``."""
        columns = (t.c.id, t.c.title, t.c.text, t.c.content_hash)
        return {r[0]: Content(*r) for r in self._live_among(columns, ids)}

    def _live_among(self, columns: tuple[Any, ...], ids: Sequence[str]) -> Iterator[Any]:
        """``columns`` of the live documents among ``ids``, an IN list of ``_IN_CHUNK`` at a
        time."""
        with self._catalog.connect() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                yield from conn.execute(
                    select(*columns).where(t.c.id.in_(chunk), t.c.deleted_at.is_(None))
                )

    def summaries(self, ids: Sequence[str], chars: int = 400) -> dict[str, Summary]:
        """Title, source and the start of the text of the live documents among ``ids``: what a
        result list shows, without reading whole texts."""
        out: dict[str, Summary] = {}
        with self._catalog.connect() as conn:
            for i in range(0, len(ids), _IN_CHUNK):
                rows = conn.execute(_SUMMARIES, {"ids": ids[i : i + _IN_CHUNK], "chars": chars})
                out.update({r[0]: Summary(r[1], r[2], r[3]) for r in rows})
        return out

    def ids_where(
        self,
        where: Mapping[str, Any],
        *,
        among: Collection[str] | None = None,
        limit: int | None = None,
    ) -> set[str]:
        """Ids of live documents matching every condition: ``source`` is the document's source,
        any other key a top-level metadata field; a value matches itself, a list any of its items.
        ``among``: only those ids are looked at; ``limit``: at most that many come back."""
        query = select(t.c.id).where(t.c.deleted_at.is_(None))
        dialect = self._catalog.engine.dialect.name
        if among is not None:
            query = query.where(_in(t.c.id, list(among), String(), dialect))
        if limit is not None:
            query = query.limit(limit)
        for key, wanted in where.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                raise InputError(
                    f"filter {key!r}: give a string, number or boolean, or a non-empty list of them"
                )
            query = query.where(_matches(key, values, dialect))
        with self._catalog.connect() as conn:
            return {r.id for r in conn.execute(query)}

    def delete(self, doc_id: str) -> None:
        """Tombstone a document: it stays in the audit trail and leaves every result list."""
        with self._catalog.begin() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.id == doc_id, t.c.deleted_at.is_(None))
                .values(deleted_at=datetime.now(UTC))
            )
        if done.rowcount == 0:
            raise NotFound(f"document {_shown(doc_id)} does not exist")

    def count(self) -> int:
        """Live documents: the count the database keeps (migration 0006), not a scan."""
        with self._catalog.connect() as conn:
            return int(conn.execute(_LIVE).scalar() or 0)

    def version(self) -> str:
        """Changes whenever a document is added, changed or deleted: rows (deleted ones stay),
        the latest update and the latest delete; what is derived from the whole corpus (a
        release's BM25) records it to know it is still whole. Read from indexes and the kept
        count (migration 0010), not a scan: the same value as the aggregate over every row."""
        stamps = t.c.updated_at, t.c.deleted_at
        deleted = t.c.deleted_at.is_not(None)
        query = select(
            func.coalesce(_LIVE.scalar_subquery(), 0)
            + select(func.count()).where(deleted).scalar_subquery(),
            *(
                select(c).where(c.is_not(None)).order_by(c.desc()).limit(1).scalar_subquery()
                for c in stamps
            ),
        )
        with self._catalog.connect() as conn:
            row = conn.execute(query).one()
        return f"{row[0]}|{row[1]}|{row[2]}"

    def deleted_ids(self) -> set[str]:
        """The ids of the deleted documents (tombstones stay; nothing is ever purged): whether
        any of many ids is live, without every live id in memory."""
        with self._catalog.connect() as conn:
            rows = conn.execute(select(t.c.id).where(t.c.deleted_at.is_not(None)))
            return {r.id for r in rows}

    def tombstones(self) -> tuple[int, str]:
        """How many documents are deleted, and when the last was: changes when one more is (or
        one comes back), read from the tombstones' index alone (migration 0009), so its cost
        follows the deletions, not the corpus."""
        with self._catalog.connect() as conn:
            count, last = conn.execute(
                select(func.count(), func.max(t.c.deleted_at)).where(t.c.deleted_at.is_not(None))
            ).one()
        return int(count), str(last)

    def iter_live_hashes(self, page: int = 20_000) -> Iterator[tuple[str, str]]:
        """(id, content hash) of every live document, in code-point order of the ids (as
        Python's ``sorted``), in keyset pages."""
        for r in self._live_rows((t.c.id, t.c.content_hash), page, codepoints=True):
            yield r.id, r.content_hash

    def corpus_hash(self) -> str:
        """One hash for the live corpus: SHA-256 of the JSON list of every [id, content hash]
        sorted by id, fed a keyset page at a time (ten million ids are never held at once)."""
        return pairs_hash(self.iter_live_hashes())

    def iter_fields(self, batch: int = 5000) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(id, source, metadata) of every live document, without the text (for labels)."""
        for r in self._live_rows((t.c.id, t.c.source, t.c.metadata), batch):
            yield r.id, r.source, r.metadata

    def iter_live_ids(self, page: int = 20_000) -> Iterator[str]:
        """The id of every live document, in ``iter_live``'s order, in keyset pages: what a
        sample is drawn from before any text is read."""
        for r in self._live_rows((t.c.id,), page):
            yield r.id

    def iter_live(self, batch: int = 1000) -> Iterator[Document]:
        """Every live document in id order, read in keyset pages (constant memory)."""
        for r in self._live_rows(tuple(t.c), batch):
            yield Document(r.id, r.source, r.title, r.text, r.metadata)

    def _live_rows(
        self, columns: tuple[Any, ...], batch: int, *, codepoints: bool = False
    ) -> Iterator[Any]:
        """``columns`` of every live document in id order, in keyset pages. ``codepoints``: in
        the order of Python's ``sorted`` (SQLite's own; PostgreSQL's follows its collation)."""
        key = self._catalog.codepoint_order(t.c.id) if codepoints else t.c.id
        last = ""
        while True:
            with self._catalog.connect() as conn:
                rows = conn.execute(
                    select(*columns)
                    .where(t.c.deleted_at.is_(None), key > last)
                    .order_by(key)
                    .limit(batch)
                ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    def add_ingest_run(
        self,
        *,
        source: str,
        file: str,
        raw_key: str | None,
        counts: dict[str, int],
        started_at: datetime,
    ) -> None:
        with self._catalog.begin() as conn:
            conn.execute(
                ingest_runs.insert().values(
                    source=source,
                    file=file,
                    raw_key=raw_key,
                    counts=counts,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                )
            )


def _shown(doc_id: str) -> str:
    """An id fit for a message: a long one by its start (an error must not echo a whole path)."""
    return repr(doc_id if len(doc_id) <= 128 else doc_id[:128] + "…")
