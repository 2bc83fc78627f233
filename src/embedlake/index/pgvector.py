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
import math
import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import numpy as np
import psycopg
from psycopg import sql

from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.index import Matrix, check_vectors, effort_for
from embedlake.index.pgpool import Pool, Session, conninfo, scalar

R = TypeVar("R")
Hits = list[list[tuple[str, float]]]

MANIFEST = "pgvector.json"
TABLE_PREFIX = "embedlake_vectors_"
_MAX_DIM = 2000  # pgvector's HNSW on the ``vector`` type
_MAX_EF = 1000  # hnsw.ef_search's upper bound

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
        self._pool = Pool(conninfo(url))
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
            empty = scalar(conn, q["empty"])
            if not empty:
                conn.execute(q["stage"])
            with conn.cursor() as cur, cur.copy(q["copy_into" if empty else "copy_stage"]) as copy:
                copy.set_types(["text", "vector"])
                for row in zip(ids, vectors, strict=True):
                    copy.write_row(row)
            # a bulk load is followed by ANALYZE: the planner's row estimates
            conn.execute(q["analyze" if empty else "upsert"])
            return int(scalar(conn, q["count"]))

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

    def search(
        self,
        queries: Matrix,
        k: int,
        allowed: Collection[str] | None = None,
        effort_hits: int | None = None,
    ) -> Hits:
        queries = check_vectors(queries, self.dim)
        ef = min(effort_for(self.ef_search, k, effort_hits), _MAX_EF)
        if allowed is None:
            return self._search(queries, k, self._top, None, min(k, self._count), ef)
        if not allowed:
            return [[] for _ in range(len(queries))]
        return self._search(queries, k, self._allowed, {"ids": list(allowed)}, k, ef)

    def search_where(
        self,
        queries: Matrix,
        k: int,
        where: Mapping[str, Any],
        documents: str = "documents",
        effort_hits: int | None = None,
    ) -> Hits:
        """Top ``k`` among the vectors of live documents (``deleted_at IS NULL`` in the
        ``documents`` table) matching ``where``, with the meaning of ``Documents.ids_where``:
        ``source`` is the document's source, any other key a top-level metadata field; a value
        matches itself, a list any of its items."""
        queries = check_vectors(queries, self.dim)
        condition, params = _where_sql(where)
        # a passage's key is its document's id, then chr(31) and its span (embeddings.passages)
        source = sql.SQL("{} AS v JOIN {} AS d ON d.id = split_part(v.id, chr(31), 1)")
        statements = _search_sql(source.format(self._name, sql.Identifier(documents)), condition)
        ef = min(effort_for(self.ef_search, k, effort_hits), _MAX_EF)
        return self._search(queries, k, statements, params, k, ef)

    def _search(
        self,
        queries: Matrix,
        k: int,
        statements: tuple[sql.Composed, sql.Composed],
        filters: dict[str, Any] | None,
        expect: int,
        ef: int,
    ) -> Hits:
        """Each query by the ANN statement, by the exact one when it finds fewer than ``expect``.
        A filtered query is never prepared: a generic plan would not see how many rows the filter
        keeps, and that decides between the HNSW index and a scan of the matching rows."""
        if self._count and not self._built:
            self.build()
        ann, exact = statements
        prepare = None if filters is None else False

        def run(session: Session) -> Hits:
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
        if scalar(conn, "SELECT to_regclass(%s) IS NULL", [self.table]):
            raise NotFound(f"pgvector index table {self.table} is not in the database (dropped?)")
        built = scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [f"{self.table}_hnsw"])
        return bool(built), int(scalar(conn, self._sql["count"]))

    def _run(self, what: str, fn: Callable[[psycopg.Connection[Any]], R]) -> R:
        return self._pool.run(f"pgvector index {self.table}: {what}", lambda s: fn(s.conn))


def _search_sql(
    source: sql.Composable, condition: sql.Composable
) -> tuple[sql.Composed, sql.Composed]:
    head = sql.SQL(_SELECT).format(source=source, condition=condition)
    return head + sql.SQL(_ANN), head + sql.SQL(_EXACT)


def _where_sql(where: Mapping[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """``Documents.ids_where`` in SQL over ``d`` (the documents table). Each key's values are
    bound as one array per kind (``= ANY``), so a long list is one parameter, not an OR of one
    placeholder per value. Values are cast the way SQLAlchemy's ``as_float``/``as_boolean`` do,
    but a value that does not parse as the wanted type does not match instead of failing."""
    parts: list[sql.Composable] = [sql.SQL("d.deleted_at IS NULL")]
    params: dict[str, Any] = {}
    for n, (key, wanted) in enumerate(where.items()):
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise InputError(
                f"filter {key!r}: give a string, number or boolean, or a non-empty list of them"
            )
        params[f"k{n}"] = key
        field = f"(d.metadata ->> %(k{n})s)"
        alternatives: list[sql.Composable] = [sql.SQL("false")]
        for kind, listed in _by_kind(key, values).items():
            if listed:
                params[f"v{n}{kind}"] = listed
                test = _ANY[kind].format(field=field, values=f"%(v{n}{kind})s")
                alternatives.append(sql.SQL(test))
        parts.append(sql.SQL("({})").format(sql.SQL(" OR ").join(alternatives)))
    return sql.SQL(" AND ").join(parts), params


def _by_kind(key: str, values: list[str | int | float | bool]) -> dict[str, list[Any]]:
    """A filter's values as one list per test in ``_ANY``; numbers no float8 equals (NaN, the
    infinities, integers past a float's range) match nothing and are left out."""
    if key == "source":
        return {"source": list(dict.fromkeys(str(v) for v in values))}
    numbers: dict[float, None] = {}
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                continue
            if math.isfinite(number):
                numbers[number] = None
    return {
        "text": list(dict.fromkeys(v for v in values if isinstance(v, str))),
        "float8": list(numbers),
        "boolean": sorted({v for v in values if isinstance(v, bool)}),
    }


_CAST = "(CASE WHEN pg_input_is_valid({field}, '{type}') THEN {field}::{type} END)"
_ANY = {
    "source": "d.source = ANY({values}::text[])",
    "text": "{field} = ANY({values}::text[])",
    "float8": _CAST.format(field="{field}", type="float8") + " = ANY({values}::float8[])",
    "boolean": _CAST.format(field="{field}", type="boolean") + " = ANY({values}::boolean[])",
}
