"""Catalog engine: PostgreSQL (with pgvector for the ``pgvector`` index engine), via psycopg 3.

Many workers and API processes share one database: writes are short transactions, alias moves are
single transactions, and the runtime's queue (DBOS) claims work with ``SKIP LOCKED`` in the same
server. Nothing here is PostgreSQL-specific beyond the driver and the upsert dialect.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as insert

PING_AFTER = 10.0  # seconds: a pooled connection idle longer is pinged before it is used again


def connect(url: str) -> Engine:
    # A serving process searches from several threads at once (see sqlite.py).
    engine = create_engine(url, pool_size=16, max_overflow=16)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Replace a pooled connection the server closed (a restart, a pooler's idle timeout)
    instead of failing a request with it: SQLAlchemy's ``pool_pre_ping`` does it with a round
    trip at every checkout, one per transaction (docs/decisions/0028).
    A connection used in the last ``PING_AFTER`` s is taken as alive; if the server went away
    within that window, the statement fails once and SQLAlchemy drops the whole pool."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi: Any, record: Any) -> None:
        record.info["used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used", 0.0) <= PING_AFTER:
            return
        try:
            alive = engine.dialect.do_ping(dbapi)  # SELECT 1 in autocommit, as pre-ping does
        except Exception as exc:
            alive, error = False, str(exc)
        if not alive:  # the pool connects again (up to three times)
            raise sa_exc.DisconnectionError(error if "error" in locals() else "ping failed")


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    fixed: Mapping[str, Any],
) -> None:
    """Insert ``rows`` (values of ``columns``, each followed by the ``fixed`` values) with
    ``COPY … FROM STDIN`` in the open transaction: PostgreSQL's bulk load (an ingest ran 1.59× as
    fast as through SQLAlchemy's ``INSERT``: bench/ingest.py). Values as psycopg adapts them, a
    JSON column's as its text."""
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in (*columns, *fixed))
    tail = tuple(fixed.values())
    driver = conn.connection.driver_connection
    assert driver is not None  # a connection in a transaction has one
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row + tail)


__all__ = ["connect", "insert", "insert_rows"]
