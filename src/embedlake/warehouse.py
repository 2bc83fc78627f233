"""The warehouse: DuckDB views over the lake's Parquet (curated documents and vectors).

Views:
- ``documents``: the newest curated row of every document id that is not deleted;
- ``document_log``: every curated row (inserts, updates, deletions) with the file it came from;
- ``vectors``: every embedded vector (id, content_hash, vector, model, file).
"""

from __future__ import annotations

from typing import Any

import duckdb

from embedlake.errors import InputError
from embedlake.ingest.curated import PREFIX as CURATED
from embedlake.workspace import Workspace


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    fs: Any
    fs, root = ws.lake.fsspec()
    con = duckdb.connect(":memory:")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        base = root
    else:
        # DuckDB reads any fsspec filesystem once registered (no extension download needed).
        con.register_filesystem(fs)
        base = f"{protocol}://{root}"
    empty_docs = (
        "select * from (values (''::varchar, ''::varchar, ''::varchar, ''::varchar, "
        "''::varchar, ''::varchar, ''::varchar, now()::timestamptz, ''::varchar)) "
        "t(id, source, title, text, metadata, content_hash, op, written_at, filename) "
        "where false"
    )
    has_docs = any(True for _ in ws.lake.list(CURATED))
    log_sql = (
        f"select * from read_parquet('{base}/{CURATED}/**/*.parquet', filename = true, "
        f"hive_partitioning = false, union_by_name = true)"
        if has_docs
        else empty_docs
    )
    con.execute(f"create view document_log as {log_sql}")
    con.execute("""
        create view documents as
        select id, source, title, text, metadata, content_hash, written_at as updated_at
        from document_log
        qualify row_number() over (partition by id order by written_at desc, filename desc) = 1
        and op = 'upsert'
    """)
    has_vectors = any(
        k.key.endswith(".parquet") and "/shard-" in k.key for k in ws.lake.list("embeddings")
    )
    if has_vectors:
        con.execute(f"""
            create view vectors as
            select id, content_hash, vector,
                   regexp_extract(filename, 'embeddings/([^/]+/[^/]+)/', 1) as model, filename
            from read_parquet('{base}/embeddings/**/shard-*.parquet', filename = true,
                              hive_partitioning = false, union_by_name = true)
        """)
    return con


def query(ws: Workspace, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = connect(ws)
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from None
    columns = [d[0] for d in cursor.description or []]
    return columns, cursor.fetchall()
