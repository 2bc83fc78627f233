"""The database under the catalog: an engine, its upsert dialect, and units of work.

The repositories (documents, registry, outbox, …) run their queries through a :class:`Database`;
:class:`~embedlake.catalog.Catalog` is a database with the repositories over it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import SQLAlchemyError

from embedlake.errors import CatalogError


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Database errors become CatalogError, without the SQL text (it may carry user data)."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise CatalogError(f"catalog: {what} failed: {type(cause).__name__}: {cause}") from exc


# (connection, table, columns, rows, fixed columns' values): the engine's bulk load
InsertRows = Callable[
    [Connection, Table, Sequence[str], Iterable[tuple[Any, ...]], Mapping[str, Any]], None
]


class Database:
    """One database engine, its upsert dialect (``insert``) and bulk load (``insert_rows``), with
    nested units of work."""

    def __init__(self, engine: Engine, insert: Callable[..., Any], insert_rows: InsertRows) -> None:
        self.engine = engine
        self.insert = insert
        self.insert_rows = insert_rows
        self._active: ContextVar[Connection | None] = ContextVar(
            f"catalog-{id(self)}", default=None
        )
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        # callbacks of the open outermost transaction, run once it committed (after_commit)
        self._committed: ContextVar[list[Callable[[], None]] | None] = ContextVar(
            f"catalog-commit-{id(self)}", default=None
        )

    def codepoint_order(self, column: Any) -> Any:
        """``column`` compared and sorted by code points, as Python compares strings: SQLite's
        own order; on PostgreSQL the "C" collation, whatever the database's (a merge against a
        sorted file or a hash of a sorted list needs the same order on both sides)."""
        return column.collate("C") if self.engine.dialect.name == "postgresql" else column

    def on_record(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Be told of every record the lake must keep (see ``catalog.journal``)."""
        self._listeners.append(listener)

    def journal(self, key: str, record: dict[str, Any]) -> None:
        """Announce a record; called inside the transaction that wrote it, so that a listener
        that fails rolls the change back."""
        for listener in self._listeners:
            listener(key, record)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; one opened inside another joins it (a unit of work).

        This is what makes the lake's event log an outbox: an object written while a transaction
        is open (the curated Parquet of an ingest batch) is recorded in that same transaction.
        """
        active = self._active.get()
        if active is not None:
            yield active
            return
        callbacks: list[Callable[[], None]] = []
        with translate_errors("transaction"), self.engine.begin() as conn:
            token, pending = self._active.set(conn), self._committed.set(callbacks)
            try:
                yield conn
            finally:
                self._active.reset(token)
                self._committed.reset(pending)
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the open transaction committed (at once outside one; never if it
        rolls back): a wake-up sent before the commit could let the woken reader miss the row."""
        pending = self._committed.get()
        if pending is None:
            callback()
        elif callback not in pending:
            pending.append(callback)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        active = self._active.get()
        if active is not None:
            yield active  # read what the open transaction has written
            return
        with translate_errors("query"), self.engine.connect() as conn:
            yield conn
