"""The warehouse: DuckDB views over the lake's Parquet (curated documents and vectors).

Views:
- ``documents``: the newest curated row of every document id that is not deleted;
- ``document_log``: every curated row (inserts, updates, deletions) with the file it came from;
- ``vectors``: every embedded vector (id, content_hash, vector, model, file).

Read only: ``query`` runs one statement that reads (``SELECT``, ``WITH``, ``SHOW``,
``DESCRIBE``, ``EXPLAIN``), never ``COPY``, ``ATTACH``, ``CREATE``, ``INSTALL`` or ``PRAGMA``
(a ``COPY ... TO`` once overwrote a curated Parquet file of the lake, which every later query and
``recover`` then read). Over a local lake, DuckDB is also locked to the lake's folder (its
``allowed_directories``, external access off): no other file is read either.
"""

from __future__ import annotations

from typing import Any

import duckdb

from embedlake.errors import BackendError, InputError
from embedlake.ingest.curated import PREFIX as CURATED
from embedlake.workspace import Workspace

_READS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    try:
        return _connect(ws)
    except duckdb.Error as exc:  # a damaged Parquet file of the lake, say
        raise BackendError(
            f"the lake's Parquet cannot be read: {str(exc).splitlines()[0]}"
        ) from None


def _connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
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
    if protocol in ("file", "local"):  # the lake's folder and nothing else, for good
        folder = str(base).rstrip("/").replace("'", "''") + "/"
        con.execute(f"set allowed_directories = ['{folder}']")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    return con


def query(ws: Workspace, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from None
    kinds = [s.type.name for s in statements]
    if len(statements) != 1 or statements[0].type not in _READS:
        raise InputError(
            "embedlake sql runs one query that reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), "
            f"not {' + '.join(kinds) or 'nothing'}"
        )
    con = connect(ws)
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {str(exc).splitlines()[0]}") from None
    columns = [d[0] for d in cursor.description or []]
    return columns, cursor.fetchall()
