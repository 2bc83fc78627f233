"""Rebuild a lost or damaged catalog from the lake: ``embedlake recover``.

The lake is the source of truth. Each catalog table is read back from what the lake keeps
(``derived.py``: what its data implies; ``records.py``: what ``catalog.journal`` keeps):

    lake_objects          every object, as seen (so the runtime's start-up scan raises nothing)
    documents             curated/documents/…parquet replayed: the newest row per id wins, deletions
                          are tombstones
    models                models/<name>/<version>/manifest.json, each file checked against its hash
    embedding_runs,       embeddings/<name>/<version>/runs/<run>/plan.parquet and shard-*.parquet
    embedding_shards,     (a run whose shards are not all there is left running: `embed` resumes it)
    embedded
    datasets              benchmarks/<name>/ (queries, judgments, dataset.json)
    indexes, releases,    records/… (``catalog.journal``: written as they change), with their ids
    alias_moves, aliases,
    benchmark_results

What the lake does not keep is reported, not guessed: API keys (only their HMACs were in the
catalog: make them again), the event log, invocations and ingest runs (runtime history), and
anything a record names that the lake lacks. Everything is read first; the rows are then written
in one transaction, so a recovery that fails leaves the catalog as it found it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select

from embedlake.backup import advance_sequences
from embedlake.catalog import journal
from embedlake.catalog import schema as t
from embedlake.errors import Conflict
from embedlake.ingest.datasets import PREFIX as BENCHMARKS
from embedlake.lake import ObjectInfo
from embedlake.recover import derived, records
from embedlake.recover.rows import Rows
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

_BATCH = 2_000
# kept by --force: the lake cannot give them back
_KEEP = {t.api_keys.name}
_LOST = [
    "API keys: the catalog held only their HMACs and the lake keeps none; make them again "
    "(`embedlake keys create`)",
    "the event log, function invocations and ingest runs: runtime history, not kept in the lake",
]


@dataclass
class RecoveryReport:
    recovered: dict[str, int] = field(default_factory=dict)
    not_recovered: list[str] = field(default_factory=list)


def recover(ws: Workspace, *, force: bool = False) -> RecoveryReport:
    """Rebuild ``ws``'s catalog from its lake. Refused over a catalog that holds anything but
    API keys, unless ``force``: then every table but the keys is emptied and rebuilt."""
    _check_empty(ws, force)
    objects = [_with_etag(ws, o) for o in ws.lake.list()]
    rows = Rows()
    for info in objects:
        rows.add(t.lake_objects, _seen(info))
    by_prefix = _group(objects)
    derived.documents(ws, by_prefix["curated"], rows)
    derived.models(ws, by_prefix["models"], rows)
    derived.embeddings(ws, by_prefix["embeddings"], rows)
    derived.datasets(ws, by_prefix[BENCHMARKS], rows)
    records.journalled(ws, by_prefix[journal.PREFIX], rows)
    records.orphans(by_prefix, rows)
    with ws.catalog.begin() as conn:
        if force:
            for table in reversed(t.metadata.sorted_tables):
                # the kept counts follow the deletes and inserts (their triggers)
                if table.name not in _KEEP and table.name not in t.KEPT_BY_TRIGGERS:
                    conn.execute(delete(table))
        for table in t.metadata.sorted_tables:
            batch = rows.tables.get(table.name, [])
            for i in range(0, len(batch), _BATCH):
                conn.execute(table.insert(), batch[i : i + _BATCH])
            if conn.dialect.name == "postgresql":
                advance_sequences(conn, table)
        keys = conn.execute(select(func.count()).select_from(t.api_keys)).scalar_one()
    lost = rows.lost + (
        _LOST if not keys else [f"API keys: kept the {keys} the catalog held", *_LOST[1:]]
    )
    report = RecoveryReport(_counts(rows), lost)
    log.info("recovered %s", report.recovered)
    return report


def _check_empty(ws: Workspace, force: bool) -> None:
    with ws.catalog.connect() as conn:
        for table in t.metadata.sorted_tables:
            if table.name in _KEEP or table.name in t.KEPT_BY_TRIGGERS:
                continue
            if conn.execute(select(func.count()).select_from(table)).scalar_one() and not force:
                raise Conflict(
                    f"the catalog is not empty (table {table.name}): recover rebuilds a lost "
                    "catalog; use --force to replace this one's content (API keys are kept) "
                    "with what the lake holds"
                )


def _with_etag(ws: Workspace, info: ObjectInfo) -> ObjectInfo:
    """A local lake lists no etags (they cost a read); the catalog records the real one."""
    return info if info.etag else ws.lake.info(info.key)


def _seen(info: ObjectInfo) -> dict[str, Any]:
    return {"key": info.key, "etag": info.etag, "size": info.size, "seen_at": datetime.now(UTC)}


def _group(objects: Iterable[ObjectInfo]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for info in objects:
        out[info.key.split("/", 1)[0]].append(info.key)
    return out


def _counts(rows: Rows) -> dict[str, int]:
    tables = rows.tables
    docs = tables[t.documents.name]
    return {
        "lake_objects": len(tables[t.lake_objects.name]),
        "raw_inputs": sum(r["key"].startswith("raw/") for r in tables[t.lake_objects.name]),
        "documents": len(docs),
        "deleted_documents": sum(r["deleted_at"] is not None for r in docs),
        "models": len(tables[t.models.name]),
        "embedding_runs": len(tables[t.embedding_runs.name]),
        "embedding_shards": len(tables[t.embedding_shards.name]),
        "embedded": len(tables[t.embedded.name]),
        "indexes": len(tables[t.indexes.name]),
        "datasets": len(tables[t.datasets.name]),
        "benchmark_results": len(tables[t.benchmark_results.name]),
        "releases": len(tables[t.releases.name]),
        "aliases": len(tables[t.aliases.name]),
        "alias_moves": len(tables[t.alias_moves.name]),
    }
