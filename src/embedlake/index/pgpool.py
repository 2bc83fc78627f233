"""The pgvector index engine's database connections: a small pool shared by searching threads,
the server checks, and the translation of psycopg errors into embedlake's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg.pq import TransactionStatus
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from embedlake.errors import CatalogError, ConfigError, NotFound

R = TypeVar("R")

POOL_SIZE = 16  # connections per index, as many as the catalog's SQLAlchemy pool keeps
POOL_WAIT = 30.0  # seconds a search waits for a free connection


@dataclass
class Session:
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


class Pool:
    """A few open connections, shared by the threads that search (the API answers from many).

    A connection is taken for one call and given back when it is idle again; a broken one is
    dropped, and a call that met a dead kept connection (a server restart) is run again once on a
    new one. At most ``size`` connections are open; a call waits ``POOL_WAIT`` seconds for one.
    """

    def __init__(self, conninfo: str, size: int = POOL_SIZE) -> None:
        self.conninfo = conninfo
        self._idle: list[Session] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._checked = self._closed = False

    def run(self, what: str, fn: Callable[[Session], R]) -> R:
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise CatalogError(f"{what}: no free database connection after {POOL_WAIT:.0f} s")
        try:
            with translate(what):
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

    def _call(self, fn: Callable[[Session], R], current: Session) -> R:
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

    def _take(self) -> tuple[bool, Session]:
        with self._lock:
            if self._closed:
                raise CatalogError("the index was closed")
            while self._idle:
                found = self._idle.pop()
                if not found.conn.closed:
                    return True, found
        return False, self._open()

    def _open(self) -> Session:
        conn = psycopg.connect(self.conninfo, autocommit=True)
        try:
            if not self._checked:
                check_server(conn)
                self._checked = True
            register_vector(conn)
        except BaseException:
            conn.close()
            raise
        return Session(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for current in idle:
            current.conn.close()


@contextmanager
def translate(what: str) -> Iterator[None]:
    """psycopg errors become CatalogError (the server's message, never the SQL or the URL)."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise NotFound(f"{what} failed: {exc}") from exc
    except psycopg.Error as exc:
        message = str(exc).strip() or type(exc).__name__
        raise CatalogError(f"{what} failed: {type(exc).__name__}: {message}") from exc


def check_server(conn: psycopg.Connection[Any]) -> None:
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
    version = scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if tuple(int(p) for p in str(version).split(".")[:2]) < (0, 8):
        raise ConfigError(
            f"{need}; the database has {version}: run `ALTER EXTENSION vector UPDATE`"
        )


def scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def conninfo(url: str) -> str:
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
