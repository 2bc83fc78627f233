"""The curated document log: Parquet files under ``curated/documents/``, one per ingest batch.

Append-only: each part holds the rows one ingest batch inserted or changed (or deleted), with the
time it wrote them. The warehouse's ``documents`` view keeps the newest row per id, so the Parquet log and
the catalog agree without ever rewriting a file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.documents import Document
from embedlake.lake import Lake

PREFIX = "curated/documents"
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("metadata", pa.string()),  # JSON
        ("content_hash", pa.string()),
        ("op", pa.string()),
        ("written_at", pa.timestamp("us", tz="UTC")),
    ]
)


def write_part(
    lake: Lake, source: str, docs: Sequence[Document], op: Literal["upsert", "delete"] = "upsert"
) -> str | None:
    """Write one Parquet part for ``docs``; returns its key (None when there is nothing to write).

    Called before the catalog commits the same rows, so that a crash in between leaves the log
    ahead of the catalog (a later run rewrites the row; the newest wins), never behind it.
    """
    if not docs:
        return None
    now = datetime.now(UTC)
    table = pa.table(
        {
            "id": [d.id for d in docs],
            "source": [d.source for d in docs],
            "title": [d.title for d in docs],
            "text": [d.text for d in docs],
            "metadata": [d.metadata_json for d in docs],
            "content_hash": [d.content_hash for d in docs],
            # one value for the whole part: repeated by Arrow (a list of datetimes converts at ~1 µs each)
            "op": pa.repeat(pa.scalar(op, pa.string()), len(docs)),
            "written_at": pa.repeat(pa.scalar(now, SCHEMA.field("written_at").type), len(docs)),
        },
        schema=SCHEMA,
    )
    key = f"{PREFIX}/source={source}/{now:%Y%m%dT%H%M%S%f}-{uuid4().hex[:8]}.parquet"
    with tempfile.TemporaryFile() as tmp:
        # a dictionary only where values repeat: tried on ids and texts, it costs half the write
        pq.write_table(table, tmp, compression="zstd", use_dictionary=["source", "op"])
        tmp.seek(0)
        lake.put_file(key, tmp)
    return key
