"""The catalog's journal: the records no other lake object implies, kept in the lake as JSON.

Most of the catalog can be derived from the lake: documents from the curated log, models from
their manifests, embedding runs and coverage from plans and shards, datasets from
``benchmarks/``. What cannot (a release's status and index, an alias move, an index's record, a
benchmark result) the repositories announce while they write it, inside their transaction, to
the listeners the workspace gave the catalog; the workspace writes each one to the lake. So the
catalog never holds a lake handle: this is the mirror image of the lake announcing its objects to
the catalog's outbox. A write that fails rolls the catalog change back; a commit that fails after
the write leaves the lake ahead of the catalog, never behind (as the curated log does).

Layout (``embedlake recover`` reads it back)::

    records/releases/<release-id>.json          the release, rewritten on every change
    records/aliases/<alias>/<move-id>.json      one per move of the alias, never replaced
    records/indexes/<index-id>.json             an index: model, engine, params, size, prefix
    records/benchmark-results/<result-id>.json  one benchmark result
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Connection, select

from embedlake.catalog.schema import models

PREFIX = "records"
RELEASES = f"{PREFIX}/releases"
ALIASES = f"{PREFIX}/aliases"
INDEXES = f"{PREFIX}/indexes"
RESULTS = f"{PREFIX}/benchmark-results"

# (lake key, record): called inside the catalog transaction that made the change
Listener = Callable[[str, dict[str, Any]], None]


def release_key(release_id: str) -> str:
    return f"{RELEASES}/{release_id}.json"


def alias_folder(alias: str) -> str:
    """An alias name as one key segment (any character it holds is escaped)."""
    return f"{ALIASES}/{quote(alias, safe='').replace('.', '%2E')}"


def alias_name(segment: str) -> str:
    return unquote(segment)


def move_key(alias: str, move_id: int) -> str:
    # zero-padded: the lake lists keys sorted, so the moves come back in order
    return f"{alias_folder(alias)}/{move_id:012d}.json"


def index_key(index_id: int) -> str:
    return f"{INDEXES}/{index_id:012d}.json"


def result_key(result_id: int) -> str:
    return f"{RESULTS}/{result_id:012d}.json"


def model_ref(conn: Connection, model_id: int | None) -> str | None:
    """``name@version`` of a model id: records name models, since ids are the catalog's own."""
    if model_id is None:
        return None
    row = conn.execute(select(models.c.name, models.c.version).where(models.c.id == model_id)).one()
    return f"{row.name}@{row.version}"


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: _instant(v) if isinstance(v, datetime) else v for k, v in record.items()},
        indent=1,
        ensure_ascii=False,
    ).encode()


def _instant(value: datetime) -> str:
    """ISO 8601 with its offset: the catalog stores UTC, and SQLite reads it back naive."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def decode(data: bytes, dates: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record back, with the named fields as datetimes."""
    record: dict[str, Any] = json.loads(data)
    for name in dates:
        if record.get(name) is not None:
            record[name] = datetime.fromisoformat(record[name])
    return record
