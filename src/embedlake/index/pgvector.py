"""Index engine ``pgvector``: a release's vectors and their HNSW index live in the PostgreSQL catalog.

One table per index (``embedlake_vectors_<12 hex>``: ``id`` text primary key, ``embedding
vector(dim)``), bulk-loaded with binary COPY; the HNSW index (``vector_ip_ops``) is created after the
load, when the index is first searched or saved (docs/decisions/0009-pgvector-layout.md). The build
uses the server's ``maintenance_work_mem`` and parallel maintenance workers: give the graph room.

Filtered searches use pgvector's iterative index scans (0.8+), so they still find ``k``; where the
scan gives up early (``hnsw.max_scan_tuples``), the query is answered exactly instead.
``search_where`` applies a metadata filter and the documents' tombstones in SQL, joined with the
documents table, instead of shipping a list of allowed ids. Scores are inner products (``<#>`` is
the negative inner product). Needs PostgreSQL 16+ and pgvector 0.8+.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.pq import TransactionStatus
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from embedlake.errors import CatalogError, ConfigError, InputError, NotFound
from embedlake.index import Matrix, check_vectors

R = TypeVar("R")
Hits = list[list[tuple[str, float]]]

MANIFEST = "pgvector.json"
TABLE_PREFIX = "embedlake_vectors_"
_MAX_DIM = 2000  # pgvector's HNSW on the ``vector`` type
_MAX_EF = 1000  # hnsw.ef_search's upper bound
_POOL_SIZE = 16  # connections per index, as many as the catalog's SQLAlchemy pool keeps
_POOL_WAIT = 30.0  # seconds a search waits for a free connection

# The statements of one index table ({t}); the temporary staging table is per connection.
_SQL = {
    "create": "CREATE TABLE {t} (id text PRIMARY KEY, embedding vector({dim}) NOT NULL)",
    "stage": "CREATE TEMP TABLE embedlake_stage (id text, embedding vector({dim})) ON COMMIT DROP",
    "copy_into": "COPY {t} (id, embedding) FROM STDIN (FORMAT BINARY)",
    "copy_stage": "COPY embedlake_stage (id, embedding) FROM STDIN (FORMAT BINARY)",
    "upsert": "INSERT INTO {t} SELECT id, embedding FROM embedlake_stage "
    "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding",
    "hnsw": "CREATE INDEX IF NOT EXISTS {hnsw} ON {t} USING hnsw (embedding vector_ip_ops) "
    "WITH (m = {m}, ef_construction = {ef_construction})",
    "analyze": "ANALYZE {t}",
    "empty": "SELECT NOT EXISTS (SELECT 1 FROM {t})",
    "count": "SELECT count(*) FROM {t}",
    "delete": "DELETE FROM {t} WHERE id = ANY(%s)",
    "ids": "SELECT id FROM {t}",
    "rows": "SELECT id, embedding FROM {t} ORDER BY id",
    "vector": "SELECT embedding FROM {t} WHERE id = %s",
    "drop": "DROP TABLE IF EXISTS {t}",
}
# A search: the ANN query is ordered by the distance operator, so that the HNSW index can answer
# it; its exact twin by an expression no index matches (a scan of the rows the filter keeps).
_SELECT = "SELECT v.id, v.embedding <#> %(q)b FROM {source} WHERE {condition} ORDER BY "
_ANN, _EXACT = "v.embedding <#> %(q)b LIMIT %(k)s", "(v.embedding <#> %(q)b) + 0 LIMIT %(k)s"


class PgvectorIndex:
    engine = "pgvector"
    # search_where(): metadata filters and tombstones applied in SQL (serving uses it when present)
    filters_in_sql = True

    def __init__(
        self,
        dim: int,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        url: str | None = None,
        *,
        table: str | None = None,
        **_: Any,
    ) -> None:
        """A new, empty index table in the database at ``url`` (a SQLAlchemy or libpq URL), or
        the existing ``table`` of a saved index."""
        if not 1 <= dim <= _MAX_DIM:
            raise ConfigError(f"pgvector indexes 1 to {_MAX_DIM} dimensions with HNSW, not {dim}")
        if not 2 <= m <= 100 or not 2 * m <= ef_construction <= 1000:
            raise ConfigError(
                f"pgvector HNSW needs 2 <= m <= 100 and 2·m <= ef_construction <= 1000 "
                f"(got m {m}, ef_construction {ef_construction})"
            )
        if not url:
            raise ConfigError("index engine 'pgvector' needs the URL of a PostgreSQL database")
        self.dim, self.m, self.ef_construction, self.ef_search = dim, m, ef_construction, ef_search
        self.table = table or f"{TABLE_PREFIX}{uuid4().hex[:12]}"
        self._pool = _Pool(_conninfo(url))
        self._closer = weakref.finalize(self, self._pool.close)
        self._lock = threading.Lock()
        self._name = sql.Identifier(self.table)
        names = {"t": self._name, "hnsw": sql.Identifier(f"{self.table}_hnsw")}
        numbers = {"dim": dim, "m": m, "ef_construction": ef_construction}
        self._sql = {
            key: sql.SQL(text).format(**names, **{k: sql.Literal(v) for k, v in numbers.items()})
            for key, text in _SQL.items()
        }
        source = sql.SQL("{} AS v").format(self._name)
        self._top = _search_sql(source, sql.SQL("true"))
        self._allowed = _search_sql(source, sql.SQL("v.id = ANY(%(ids)s)"))
        if table is None:
            self._run("creating the index table", lambda c: c.execute(self._sql["create"]))
            self._built, self._count = False, 0
        else:
            self._built, self._count = self._run("opening the index table", self._inspect)

    def __len__(self) -> int:
        return self._count

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        """Insert or replace. The first load of an empty table is one COPY into it; later ones
        go through a staging table and an upsert (into the HNSW index, once it is built)."""
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        last = {doc_id: n for n, doc_id in enumerate(ids)}  # within a batch the last row wins
        if len(last) < len(ids):
            ids, vectors = list(last), vectors[list(last.values())]
        if len(ids):
            with self._lock:
                self._count = self._run("adding vectors", lambda c: self._load(c, ids, vectors))

    def _load(self, conn: psycopg.Connection[Any], ids: Sequence[str], vectors: Matrix) -> int:
        q = self._sql
        with conn.transaction():
            empty = _scalar(conn, q["empty"])
            if not empty:
                conn.execute(q["stage"])
            with conn.cursor() as cur, cur.copy(q["copy_into" if empty else "copy_stage"]) as copy:
                copy.set_types(["text", "vector"])
                for row in zip(ids, vectors, strict=True):
                    copy.write_row(row)
            # a bulk load is followed by ANALYZE: the planner's row estimates
            conn.execute(q["analyze" if empty else "upsert"])
            return int(_scalar(conn, q["count"]))

    def remove(self, ids: Sequence[str]) -> None:
        if ids:
            with self._lock:
                done = self._run("removing", lambda c: c.execute(self._sql["delete"], [list(ids)]))
                self._count -= done.rowcount

    def build(self) -> None:
        """Create the HNSW index (after the bulk load: much faster than inserting into it)."""
        with self._lock:
            if not self._built:
                self._run("building the HNSW index", lambda c: c.execute(self._sql["hnsw"]))
                self._built = True

    def search(self, queries: Matrix, k: int, allowed: Collection[str] | None = None) -> Hits:
        queries = check_vectors(queries, self.dim)
        if allowed is None:
            return self._search(queries, k, self._top, None, min(k, self._count))
        if not allowed:
            return [[] for _ in range(len(queries))]
        return self._search(queries, k, self._allowed, {"ids": list(allowed)}, k)

    def search_where(
        self, queries: Matrix, k: int, where: Mapping[str, Any], documents: str = "documents"
    ) -> Hits:
        """Top ``k`` among the vectors of live documents (``deleted_at IS NULL`` in the
        ``documents`` table) matching ``where``, with the meaning of ``Documents.ids_where``:
        ``source`` is the document's source, any other key a top-level metadata field; a value
        matches itself, a list any of its items."""
        queries = check_vectors(queries, self.dim)
        condition, params = _where_sql(where)
        source = sql.SQL("{} AS v JOIN {} AS d ON d.id = v.id")
        statements = _search_sql(source.format(self._name, sql.Identifier(documents)), condition)
        return self._search(queries, k, statements, params, k)

    def _search(
        self,
        queries: Matrix,
        k: int,
        statements: tuple[sql.Composed, sql.Composed],
        filters: dict[str, Any] | None,
        expect: int,
    ) -> Hits:
        """Each query by the ANN statement, by the exact one when it finds fewer than ``expect``.
        A filtered query is never prepared: a generic plan would not see how many rows the filter
        keeps, and that decides between the HNSW index and a scan of the matching rows."""
        if self._count and not self._built:
            self.build()
        ef, (ann, exact) = min(max(self.ef_search, k), _MAX_EF), statements
        prepare = None if filters is None else False

        def run(session: _Session) -> Hits:
            session.configure(ef, iterative=filters is not None)
            out = []
            for query in queries:
                bound = {**(filters or {}), "q": query, "k": k}
                rows = session.conn.execute(ann, bound, prepare=prepare).fetchall()
                if len(rows) < expect:  # the index scan gave up, or fewer match: be exact
                    rows = session.conn.execute(exact, bound, prepare=False).fetchall()
                hits = [(doc_id, -float(distance)) for doc_id, distance in rows]
                hits.sort(key=lambda h: -h[1])  # relaxed_order: the scan may hand them out of order
                out.append(hits)
            return out

        return self._pool.run(f"pgvector index {self.table}: search", run)

    def ids(self) -> list[str]:
        rows = self._run("listing ids", lambda c: c.execute(self._sql["ids"]).fetchall())
        return [r[0] for r in rows]

    def rows(self) -> tuple[list[str], Matrix]:
        """Every id and vector, in id order (for backups: the vectors live only here)."""
        found = self._run("reading all rows", lambda c: c.execute(self._sql["rows"]).fetchall())
        vectors = np.array([r[1] for r in found], dtype=np.float32).reshape(-1, self.dim)
        return [r[0] for r in found], vectors

    def vector(self, doc_id: str) -> Matrix | None:
        row = self._run("reading", lambda c: c.execute(self._sql["vector"], [doc_id]).fetchone())
        return None if row is None else np.asarray(row[0], dtype=np.float32)

    def save(self, folder: Path) -> None:
        """The vectors stay in the database: the folder gets a manifest naming their table."""
        self.build()
        manifest = {"engine": self.engine, "dim": self.dim, "count": self._count, **self.params()}
        (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    def params(self) -> dict[str, Any]:
        return {
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "table": self.table,
        }

    @classmethod
    def load(
        cls, folder: Path, url: str | None = None, ef_search: int | None = None, **_: Any
    ) -> PgvectorIndex:
        if not (folder / MANIFEST).is_file():
            raise NotFound(f"{folder} has no {MANIFEST}: not a saved pgvector index")
        saved = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        ef_search = ef_search or int(saved["ef_search"])
        m, ef_construction = int(saved["m"]), int(saved["ef_construction"])
        return cls(int(saved["dim"]), m, ef_construction, ef_search, url, table=saved["table"])

    def drop(self) -> None:
        """Drop the index table (its vectors and HNSW index) and close the connections."""
        self._run("dropping the index table", lambda c: c.execute(self._sql["drop"]))
        self._count, self._built = 0, False
        self.close()

    def close(self) -> None:
        """Close the pooled connections (also done when the index is garbage-collected)."""
        self._closer()

    def _inspect(self, conn: psycopg.Connection[Any]) -> tuple[bool, int]:
        if _scalar(conn, "SELECT to_regclass(%s) IS NULL", [self.table]):
            raise NotFound(f"pgvector index table {self.table} is not in the database (dropped?)")
        built = _scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [f"{self.table}_hnsw"])
        return bool(built), int(_scalar(conn, self._sql["count"]))

    def _run(self, what: str, fn: Callable[[psycopg.Connection[Any]], R]) -> R:
        return self._pool.run(f"pgvector index {self.table}: {what}", lambda s: fn(s.conn))


def _search_sql(
    source: sql.Composable, condition: sql.Composable
) -> tuple[sql.Composed, sql.Composed]:
    head = sql.SQL(_SELECT).format(source=source, condition=condition)
    return head + sql.SQL(_ANN), head + sql.SQL(_EXACT)


def _where_sql(where: Mapping[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """``Documents.ids_where`` in SQL over ``d`` (the documents table). Values are cast the way
    SQLAlchemy's ``as_float``/``as_boolean`` do, but a value that does not parse as the wanted
    type does not match instead of failing the query."""
    parts: list[sql.Composable] = [sql.SQL("d.deleted_at IS NULL")]
    params: dict[str, Any] = {}
    for key, wanted in where.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise InputError(
                f"filter {key!r}: give a string, number or boolean, or a non-empty list of them"
            )
        alternatives = []
        for value in values:
            name = f"p{len(params)}"
            if key == "source":
                test = sql.SQL("d.source = {}")
                params[name] = str(value)
            else:
                params[f"{name}k"] = key
                field = f"(d.metadata ->> %({name}k)s)"
                if isinstance(value, bool):
                    test = sql.SQL(_CAST.format(field=field, type="boolean"))
                elif isinstance(value, int | float):
                    test, value = sql.SQL(_CAST.format(field=field, type="float8")), float(value)
                else:
                    test = sql.SQL(f"{field} = {{}}")
                params[name] = value
            alternatives.append(test.format(sql.Placeholder(name)))
        parts.append(sql.SQL("({})").format(sql.SQL(" OR ").join(alternatives)))
    return sql.SQL(" AND ").join(parts), params


_CAST = "(CASE WHEN pg_input_is_valid({field}, '{type}') THEN {field}::{type} END) = {{}}"


@dataclass
class _Session:
    """A pooled connection and the HNSW settings it was last given. They are session settings:
    the connection serves only this index, and setting them for each search would cost a round
    trip. Iterative scans are on for filtered searches only (they cost ~10 % without a filter)."""

    conn: psycopg.Connection[Any]
    ef_search: int = 0
    iterative: bool | None = None

    def configure(self, ef_search: int, iterative: bool) -> None:
        if (ef_search, iterative) != (self.ef_search, self.iterative):
            self.conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, false), "
                "set_config('hnsw.iterative_scan', %s, false)",
                [str(ef_search), "relaxed_order" if iterative else "off"],
            )
            self.ef_search, self.iterative = ef_search, iterative


class _Pool:
    """A few open connections, shared by the threads that search (the API answers from many).

    A connection is taken for one call and given back when it is idle again; a broken one is
    dropped, and a call that met a dead kept connection (a server restart) is run again once on a
    new one. At most ``size`` connections are open; a call waits ``_POOL_WAIT`` seconds for one.
    """

    def __init__(self, conninfo: str, size: int = _POOL_SIZE) -> None:
        self._conninfo = conninfo
        self._idle: list[_Session] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._checked = self._closed = False

    def run(self, what: str, fn: Callable[[_Session], R]) -> R:
        if not self._slots.acquire(timeout=_POOL_WAIT):
            raise CatalogError(f"{what}: no free database connection after {_POOL_WAIT:.0f} s")
        try:
            with _translate(what):
                kept, current = self._take()
                try:
                    return self._call(fn, current)
                except psycopg.OperationalError:
                    if not (kept and current.conn.broken):
                        raise
                # a kept connection was dead (the server restarted): once more on a new one
                return self._call(fn, self._open())
        finally:
            self._slots.release()

    def _call(self, fn: Callable[[_Session], R], current: _Session) -> R:
        try:
            return fn(current)
        finally:
            conn = current.conn
            keep = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
            with self._lock:
                if keep := keep and not self._closed:
                    self._idle.append(current)
            if not keep:
                conn.close()

    def _take(self) -> tuple[bool, _Session]:
        with self._lock:
            if self._closed:
                raise CatalogError("the index was closed")
            while self._idle:
                found = self._idle.pop()
                if not found.conn.closed:
                    return True, found
        return False, self._open()

    def _open(self) -> _Session:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            if not self._checked:
                _check_server(conn)
                self._checked = True
            register_vector(conn)
        except BaseException:
            conn.close()
            raise
        return _Session(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for current in idle:
            current.conn.close()


@contextmanager
def _translate(what: str) -> Iterator[None]:
    """psycopg errors become CatalogError (the server's message, never the SQL or the URL)."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise NotFound(f"{what} failed: {exc}") from exc
    except psycopg.Error as exc:
        message = str(exc).strip() or type(exc).__name__
        raise CatalogError(f"{what} failed: {type(exc).__name__}: {message}") from exc


def _check_server(conn: psycopg.Connection[Any]) -> None:
    """PostgreSQL 16+ (pg_input_is_valid) with pgvector 0.8+ (iterative index scans), installing
    the extension where it is missing and this user may."""
    need = "index engine 'pgvector' needs PostgreSQL 16+ with pgvector 0.8+"
    if conn.info.server_version < 160000:
        raise ConfigError(f"{need}; the server is PostgreSQL {conn.info.server_version // 10000}")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile) as exc:
        raise ConfigError(
            f"{need}; the catalog database has no vector extension and it cannot be created here "
            f"({exc}): install pgvector and run `CREATE EXTENSION vector;` as a superuser"
        ) from None
    version = _scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if tuple(int(p) for p in str(version).split(".")[:2]) < (0, 8):
        raise ConfigError(
            f"{need}; the database has {version}: run `ALTER EXTENSION vector UPDATE`"
        )


def _scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _conninfo(url: str) -> str:
    """A libpq URI from a SQLAlchemy URL (``postgresql+psycopg://``) or a libpq one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("index engine 'pgvector': the database URL is not a URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"index engine 'pgvector' needs a PostgreSQL database, not {parsed.get_backend_name()!r}"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
