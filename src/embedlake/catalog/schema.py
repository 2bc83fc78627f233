"""Catalog tables (SQLAlchemy Core). Alembic migrations create them; a test keeps both in step."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# One row per document id. A changed text is a new content hash; a deletion is a tombstone, so that
# every release can drop the document from its results without losing the audit trail.
documents = Table(
    "documents",
    metadata,
    Column("id", String(512), primary_key=True),
    Column("source", String(256), nullable=False),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    Index("ix_documents_source", "source"),
    # the latest update (migration 0010): part of the documents' version, read at the index's end
    Index("ix_documents_updated", "updated_at"),
    # the tombstones alone (migrations 0009, 0010): finding them reads a few pages, not every text;
    # ordered by ``deleted_at``, the latest deletion is the index's end (with the id in it,
    # SQLite answers from the index without a row's page)
    Index(
        "ix_documents_deleted",
        "deleted_at",
        "id",
        sqlite_where=text("deleted_at IS NOT NULL"),
        postgresql_where=text("deleted_at IS NOT NULL"),
    ),
)

# The outbox: every event (lake writes, domain events, schedules), persisted when it happens and
# read in order by the runtime's dispatcher.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
)

# Objects of the lake the runtime has seen (written by embedlake or found by the watcher or the
# start-up scan), so that a file dropped while the runtime was down raises its event exactly once.
lake_objects = Table(
    "lake_objects",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("etag", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# One row per (event, function): what the functions runtime did, for `embedlake runs`.
invocations = Table(
    "invocations",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("function", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("status", String(32), nullable=False),  # queued | running | succeeded | dead
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("seconds", Float, nullable=True),
    Column("executor", String(128), nullable=True),  # the worker that claimed it (its crash)
    Index("ix_invocations_function", "function"),
    Index("ix_invocations_status", "status"),
)

runtime_state = Table(
    "runtime_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(256), nullable=False),
    Column("file", Text, nullable=False),
    Column("raw_key", Text, nullable=True),
    Column("counts", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("prefix", Text, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "version", name="uq_models_name_version"),
)

embedding_runs = Table(
    "embedding_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("status", String(32), nullable=False),  # running | done | failed
    Column("n_documents", Integer, nullable=False),
    Column("n_shards", Integer, nullable=False),
    Column("plan_key", Text, nullable=False),
    Column("chunker", String(64), nullable=False, server_default=""),  # Chunking.key
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("seconds", Float, nullable=True),
)

embedding_shards = Table(
    "embedding_shards",
    metadata,
    Column("run_id", Integer, ForeignKey("embedding_runs.id"), primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("key", Text, nullable=False),
    Column("n_documents", Integer, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
)

# Which content of which document a model has embedded with which chunking, and where its
# passages' vectors lie: the coverage that incremental embedding and index building read.
embedded = Table(
    "embedded",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("chunker", String(64), primary_key=True),  # Chunking.key ("": whole documents)
    Column("doc_id", String(512), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("shard_key", Text, nullable=False),
    Column("passages", Integer, nullable=False),
    Column("cut", Integer, nullable=False),  # characters of the document no passage holds
    Index("ix_embedded_shard", "model_id", "chunker", "shard_key"),  # streamed index builds
)

# kept by triggers (migration 0006): live documents, and each model's embedded documents per
# chunking ("embedded:<model id>:<chunking>", "cut:…"), so counting them scans nothing
KEPT_BY_TRIGGERS = ("counts",)  # rebuilt from the other tables' rows: never copied or cleared
counts = Table(
    "counts",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

indexes = Table(
    "indexes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("engine", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("n_vectors", Integer, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("prefix", Text, nullable=False),
    Column("n_queries", Integer, nullable=False),
    Column("n_judgments", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

benchmark_results = Table(
    "benchmark_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(256), nullable=False),
    Column("system", String(256), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=True),
    Column("index_id", Integer, ForeignKey("indexes.id"), nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A release: one model's vectors, index and reducer over a corpus snapshot, with its benchmark
# report. Immutable once built, except that documents arriving later are added to its index.
releases = Table(
    "releases",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column(
        "status", String(32), nullable=False
    ),  # building | built | rejected | published | failed
    Column("index_id", Integer, ForeignKey("indexes.id"), nullable=True),
    Column("prefix", Text, nullable=False),
    Column("snapshot", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("release_id", String(64), ForeignKey("releases.id"), nullable=False),
    Column("moved_at", DateTime(timezone=True), nullable=False),
)

# The history of every alias move: who moved it, when, from where, to where, and why.
alias_moves = Table(
    "alias_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alias", String(128), nullable=False),
    Column("from_release", String(64), nullable=True),
    Column("to_release", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # publish | rollback
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_alias_moves_alias", "alias"),
)

# API keys: only an HMAC of the key is stored; ``key_id`` (in the key's text) finds the row.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
