"""Models, embedding runs and their shards, coverage, and indexes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update

from embedlake.catalog import journal
from embedlake.catalog.announce import SERVING, announce
from embedlake.catalog.database import Database
from embedlake.catalog.peek import count_name
from embedlake.catalog.schema import (
    counts,
    documents,
    embedded,
    embedding_runs,
    embedding_shards,
    indexes,
    models,
)
from embedlake.errors import CatalogError, Conflict, NotFound


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    version: str
    kind: str
    dim: int
    content_hash: str
    prefix: str
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class RunRecord:
    id: int
    model_id: int
    status: str
    n_documents: int
    n_shards: int
    plan_key: str
    chunker: str = ""  # the Chunking.key of its vectors


@dataclass(frozen=True)
class IndexRecord:
    id: int
    model_id: int
    engine: str
    params: dict[str, Any]
    n_vectors: int
    prefix: str
    created_at: datetime


class Covered(NamedTuple):
    """One document a shard embedded: its content, its number of passages and the characters
    of it that no passage holds (0: all of it is embedded)."""

    doc_id: str
    content_hash: str
    passages: int = 1
    cut: int = 0


@dataclass(frozen=True)
class Cut:
    """What was embedded of a set of documents: documents, passages, and the documents (and
    characters) that were cut because they were longer than the chunking allows."""

    documents: int = 0
    passages: int = 0
    cut_documents: int = 0
    cut_chars: int = 0

    def add(self, passages: int, cut: int) -> Cut:
        return Cut(
            self.documents + 1,
            self.passages + passages,
            self.cut_documents + (cut > 0),
            self.cut_chars + cut,
        )

    def describe(self) -> dict[str, int]:
        return {
            "documents": self.documents,
            "passages": self.passages,
            "cut_documents": self.cut_documents,
            "cut_characters": self.cut_chars,
        }


def _run(row: Any) -> RunRecord:
    return RunRecord(
        row.id, row.model_id, row.status, row.n_documents, row.n_shards, row.plan_key, row.chunker
    )


def _new_id(key: Any) -> int:
    """The primary key SQLAlchemy reports for a single-row insert."""
    if key is None or key[0] is None:
        raise CatalogError("catalog: the database returned no id for a new row")
    return int(key[0])


def _model(row: Any) -> ModelRecord:
    return ModelRecord(
        row.id, row.name, row.version, row.kind, row.dim, row.content_hash, row.prefix, row.manifest
    )


class Registry:
    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog

    # -- models ---------------------------------------------------------------------------
    def add_model(
        self,
        *,
        name: str,
        version: str,
        kind: str,
        dim: int,
        content_hash: str,
        prefix: str,
        manifest: dict[str, Any],
    ) -> ModelRecord:
        """Register a model version; the same name@version with the same hash is a no-op."""
        with self._catalog.begin() as conn:
            conn.execute(
                self._catalog.insert(models)
                .values(
                    name=name,
                    version=version,
                    kind=kind,
                    dim=dim,
                    content_hash=content_hash,
                    prefix=prefix,
                    manifest=manifest,
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing(index_elements=["name", "version"])
            )
        existing = self.model(f"{name}@{version}")
        if existing.content_hash != content_hash:
            raise Conflict(
                f"model {name}@{version} is already registered with different content (hash "
                f"{existing.content_hash[:12]}); versions are immutable: choose a new version"
            )
        return existing

    def model(self, ref: str) -> ModelRecord:
        """``name@version``, or ``name`` for its newest version."""
        name, _, version = ref.partition("@")
        query = select(models).where(models.c.name == name)
        query = (
            query.where(models.c.version == version)
            if version
            else query.order_by(models.c.id.desc()).limit(1)
        )
        with self._catalog.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"model {ref!r} is not registered (see `embedlake models`)")
        return _model(row)

    def model_by_id(self, model_id: int) -> ModelRecord:
        with self._catalog.connect() as conn:
            row = conn.execute(select(models).where(models.c.id == model_id)).first()
        if row is None:
            raise NotFound(f"model id {model_id} is not registered")
        return _model(row)

    def list_models(self) -> list[ModelRecord]:
        with self._catalog.connect() as conn:
            return [_model(r) for r in conn.execute(select(models).order_by(models.c.id))]

    # -- embedding runs ---------------------------------------------------------------------
    def open_run(self, model_id: int, chunker: str = "") -> RunRecord | None:
        """The unfinished run of a model and chunking, if a previous `embed` stopped half way."""
        with self._catalog.connect() as conn:
            row = conn.execute(
                select(embedding_runs)
                .where(
                    embedding_runs.c.model_id == model_id,
                    embedding_runs.c.chunker == chunker,
                    embedding_runs.c.status == "running",
                )
                .order_by(embedding_runs.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else _run(row)

    def latest_chunker(self, model_id: int) -> str:
        """The chunking of the model's newest embedding run ("" when it has none): what a
        caller that names no chunking reads."""
        with self._catalog.connect() as conn:
            found = conn.execute(
                select(embedding_runs.c.chunker)
                .where(embedding_runs.c.model_id == model_id)
                .order_by(embedding_runs.c.id.desc())
                .limit(1)
            ).scalar()
        return str(found or "")

    def run(self, run_id: int) -> RunRecord:
        with self._catalog.connect() as conn:
            row = conn.execute(select(embedding_runs).where(embedding_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"embedding run {run_id} does not exist")
        return _run(row)

    def start_run(
        self, model_id: int, n_documents: int, n_shards: int, plan_key: str, chunker: str = ""
    ) -> RunRecord:
        with self._catalog.begin() as conn:
            run_key = conn.execute(
                embedding_runs.insert().values(
                    model_id=model_id,
                    status="running",
                    n_documents=n_documents,
                    n_shards=n_shards,
                    plan_key=plan_key,
                    chunker=chunker,
                    started_at=datetime.now(UTC),
                )
            ).inserted_primary_key
        return RunRecord(
            _new_id(run_key), model_id, "running", n_documents, n_shards, plan_key, chunker
        )

    def done_shards(self, run_id: int) -> set[int]:
        with self._catalog.connect() as conn:
            rows = conn.execute(
                select(embedding_shards.c.shard).where(embedding_shards.c.run_id == run_id)
            )
            return {r.shard for r in rows}

    def finish_shard(
        self, run: RunRecord, shard: int, key: str, coverage: Sequence[Covered]
    ) -> bool:
        """Record a written shard and the documents it covers, atomically.

        False when the shard was recorded already (a repeated delivery of the same work)."""
        insert = self._catalog.insert
        stmt = insert(embedded)
        upsert = stmt.on_conflict_do_update(
            index_elements=["model_id", "chunker", "doc_id"],
            set_=dict(
                content_hash=stmt.excluded.content_hash,
                shard_key=stmt.excluded.shard_key,
                passages=stmt.excluded.passages,
                cut=stmt.excluded.cut,
            ),
        )
        # Made before the transaction, and sent as one executemany of a statement compiled once:
        # a multi-row VALUES of a shard's 2,048 rows took SQLAlchemy longer to compile than the
        # database to run, with the catalog's write lock held (other processes embedding waited).
        rows = [
            dict(
                model_id=run.model_id,
                chunker=run.chunker,
                doc_id=c.doc_id,
                content_hash=c.content_hash,
                shard_key=key,
                passages=c.passages,
                cut=c.cut,
            )
            for c in coverage
        ]
        with self._catalog.begin() as conn:
            first = conn.execute(
                insert(embedding_shards)
                .values(
                    run_id=run.id,
                    shard=shard,
                    key=key,
                    n_documents=len(coverage),
                    finished_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing(index_elements=["run_id", "shard"])
            )
            if not first.rowcount:
                return False
            if rows:
                conn.execute(upsert, rows)
        return True

    def finish_run(self, run_id: int, seconds: float | None = None) -> None:
        """Mark a run done; without ``seconds``, its wall time since it started."""
        now = datetime.now(UTC)
        with self._catalog.begin() as conn:
            if seconds is None:
                started = conn.execute(
                    select(embedding_runs.c.started_at).where(embedding_runs.c.id == run_id)
                ).scalar_one()
                started = started if started.tzinfo else started.replace(tzinfo=UTC)
                seconds = (now - started).total_seconds()
            conn.execute(
                update(embedding_runs)
                .where(embedding_runs.c.id == run_id)
                .values(status="done", finished_at=now, seconds=seconds)
            )

    def shard_keys(self, model_id: int, chunker: str) -> list[str]:
        """The shards holding the model's current vectors of the chunking ``chunker``, sorted."""
        with self._catalog.connect() as conn:
            rows = conn.execute(
                select(embedded.c.shard_key)
                .where(embedded.c.model_id == model_id, embedded.c.chunker == chunker)
                .distinct()
                .order_by(embedded.c.shard_key)
            )
            return [r.shard_key for r in rows]

    def count_current(self, model_id: int, chunker: str) -> tuple[int, int]:
        """(passages, documents) of the live documents whose current text the model has
        embedded with the chunking ``chunker``: counted in the database."""
        query = _current(
            select(func.coalesce(func.sum(embedded.c.passages), 0), func.count()), model_id, chunker
        )
        with self._catalog.connect() as conn:
            row = conn.execute(query).one()
        return int(row[0]), int(row[1])

    def iter_current(
        self, model_id: int, chunker: str, page: int = 20_000
    ) -> Iterator[tuple[str, str]]:
        """``current``'s (doc id, content hash) pairs for the whole corpus, in code-point order
        of the ids (as Python's ``sorted``), in keyset pages: nothing holds them all."""
        key = self._catalog.codepoint_order(embedded.c.doc_id)
        last = ""
        while True:
            query = _current(select(embedded.c.doc_id, embedded.c.content_hash), model_id, chunker)
            with self._catalog.connect() as conn:
                rows = conn.execute(query.where(key > last).order_by(key).limit(page)).all()
            yield from ((r.doc_id, r.content_hash) for r in rows)
            if len(rows) < page:
                return
            last = rows[-1].doc_id

    def lacking(self, model_id: int, chunker: str, page: int = 20_000) -> Iterator[tuple[str, str]]:
        """(doc id, content hash) of every live document the model has not embedded with the
        chunking ``chunker`` at its current text, in id order: an anti-join read in keyset
        pages, so neither side is loaded whole."""
        last = ""
        while True:
            with self._catalog.connect() as conn:
                rows = conn.execute(
                    select(documents.c.id, documents.c.content_hash)
                    .outerjoin(
                        embedded,
                        (embedded.c.doc_id == documents.c.id)
                        & (embedded.c.model_id == model_id)
                        & (embedded.c.chunker == chunker),
                    )
                    .where(
                        documents.c.deleted_at.is_(None),
                        documents.c.id > last,
                        embedded.c.content_hash.is_(None)
                        | (embedded.c.content_hash != documents.c.content_hash),
                    )
                    .order_by(documents.c.id)
                    .limit(page)
                ).all()
            yield from ((r.id, r.content_hash) for r in rows)
            if len(rows) < page:
                return
            last = rows[-1].id

    def current(self, model_id: int, chunker: str, shard_key: str | None = None) -> dict[str, str]:
        """doc id → content hash of the live documents whose current text the model has embedded
        with the chunking ``chunker`` (in ``shard_key`` only, when given): what an index of the
        model built now holds."""
        query = _current(select(embedded.c.doc_id, embedded.c.content_hash), model_id, chunker)
        if shard_key is not None:
            query = query.where(embedded.c.shard_key == shard_key)
        with self._catalog.connect() as conn:
            return {r.doc_id: r.content_hash for r in conn.execute(query)}

    def cut(self, model_id: int, chunker: str, live: bool = False) -> Cut:
        """Passages, and documents cut, among what the model embedded with ``chunker`` (of the
        live documents only, with ``live``: a release's), summed in the database."""
        query = (
            select(
                func.count(),
                func.coalesce(func.sum(embedded.c.passages), 0),
                func.count().filter(embedded.c.cut > 0),
                func.coalesce(func.sum(embedded.c.cut), 0),
            )
            .select_from(embedded)
            .where(embedded.c.model_id == model_id, embedded.c.chunker == chunker)
        )
        if live:
            query = query.join(documents, documents.c.id == embedded.c.doc_id).where(
                documents.c.deleted_at.is_(None)
            )
        with self._catalog.connect() as conn:
            row = conn.execute(query).one()
        return Cut(*(int(v) for v in row))

    def forget_coverage(self, model_id: int, doc_ids: Sequence[str]) -> None:
        """Forget the documents' vectors of every chunking of the model."""
        with self._catalog.begin() as conn:
            conn.execute(
                delete(embedded).where(
                    embedded.c.model_id == model_id, embedded.c.doc_id.in_(list(doc_ids))
                )
            )

    def count_embedded(
        self, model_id: int, *, cut: bool = False, chunker: str | None = None
    ) -> int:
        """Live documents the model has embedded with the chunking ``chunker`` (None: that of
        its newest run); with ``cut``, those of them longer than the chunking keeps (or, passages
        off, than the window). Read from the counts the database keeps (migration 0006), less
        the deleted documents' rows."""
        chunker = self.latest_chunker(model_id) if chunker is None else chunker
        name = count_name("cut" if cut else "embedded", model_id, chunker)
        # the kept count has the rows of deleted documents too (their vectors stay, as the
        # documents' tombstones do): those are counted apart, through the tombstones' index
        # (migration 0009), so the cost follows the deletions, not the corpus
        tombstones = select(documents.c.id).where(documents.c.deleted_at.is_not(None))
        gone = (
            select(func.count())
            .select_from(embedded)
            .where(
                embedded.c.model_id == model_id,
                embedded.c.chunker == chunker,
                embedded.c.doc_id.in_(tombstones),  # probed id by id (SQLite's plan)
                *([embedded.c.cut > 0] if cut else []),
            )
        )
        with self._catalog.connect() as conn:
            value = conn.execute(select(counts.c.value).where(counts.c.name == name)).scalar()
            deleted = conn.execute(gone).scalar()
        return int(value or 0) - int(deleted or 0)

    # -- indexes ----------------------------------------------------------------------------
    def add_index(
        self, *, model_id: int, engine: str, params: dict[str, Any], n_vectors: int, prefix: str
    ) -> IndexRecord:
        now = datetime.now(UTC)
        with self._catalog.begin() as conn:
            row = dict(
                engine=engine, params=params, n_vectors=n_vectors, prefix=prefix, created_at=now
            )
            index_id = _new_id(
                conn.execute(indexes.insert().values(model_id=model_id, **row)).inserted_primary_key
            )
            model = journal.model_ref(conn, model_id)
            self._catalog.journal(
                journal.index_key(index_id), {"id": index_id, "model": model, **row}
            )
            # before any release is published, the API serves the newest index
            announce(self._catalog, conn, SERVING)
        return IndexRecord(index_id, model_id, engine, params, n_vectors, prefix, now)

    def index(self, index_id: int) -> IndexRecord:
        with self._catalog.connect() as conn:
            row = conn.execute(select(indexes).where(indexes.c.id == index_id)).first()
        if row is None:
            raise NotFound(f"index {index_id} does not exist")
        return IndexRecord(
            row.id, row.model_id, row.engine, row.params, row.n_vectors, row.prefix, row.created_at
        )

    def latest_index(self, model_id: int | None = None) -> IndexRecord:
        """The newest index (of a model, or of any model)."""
        query = select(indexes).order_by(indexes.c.id.desc()).limit(1)
        if model_id is not None:
            query = query.where(indexes.c.model_id == model_id)
        with self._catalog.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound("no index has been built yet: run `embedlake index` first")
        return IndexRecord(
            row.id, row.model_id, row.engine, row.params, row.n_vectors, row.prefix, row.created_at
        )


def _current(query: Any, model_id: int, chunker: str) -> Any:
    """``query`` over the model's coverage rows of ``chunker`` whose document is live at the
    text that was embedded."""
    return (
        query.select_from(embedded)
        .join(documents, documents.c.id == embedded.c.doc_id)
        .where(
            embedded.c.model_id == model_id,
            embedded.c.chunker == chunker,
            documents.c.deleted_at.is_(None),
            documents.c.content_hash == embedded.c.content_hash,
        )
    )
