"""Catalog engine: PostgreSQL (with pgvector for the ``pgvector`` index engine), via psycopg 3.

Many workers and API processes share one database: writes are short transactions, alias moves are
single transactions, and the runtime's queue (DBOS) claims work with ``SKIP LOCKED`` in the same
server. Nothing here is PostgreSQL-specific beyond the driver and the upsert dialect.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.dialects.postgresql import insert as insert


def connect(url: str) -> Engine:
    # A serving process searches from several threads at once (see sqlite.py); pre-ping replaces
    # connections the server closed (a restart, an idle timeout in a pooler) instead of failing a
    # request with them.
    return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


__all__ = ["connect", "insert"]
