"""The catalog: the production database of documents, models, runs, indexes and results.

SQLAlchemy Core over one engine module per database (``sqlite.py``, ``postgres.py``), so
that PostgreSQL is a connection-string change. Repositories group the queries by subject.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from embedlake.catalog import migrate
from embedlake.errors import CatalogError, ConfigError

# dialect name → engine module; imported lazily (a PostgreSQL driver is only needed when used).
ENGINES: dict[str, str] = {
    "sqlite": "embedlake.catalog.sqlite",
    "postgresql": "embedlake.catalog.postgres",
}


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Database errors become CatalogError, without the SQL text (it may carry user data)."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise CatalogError(f"catalog: {what} failed: {type(cause).__name__}: {cause}") from exc


class Catalog:
    """One database, its upsert dialect, and the repositories over it."""

    def __init__(self, engine: Engine, insert: Callable[..., Any]) -> None:
        from embedlake.catalog.documents import Documents
        from embedlake.catalog.events import Events
        from embedlake.catalog.keys import Keys
        from embedlake.catalog.records import Records
        from embedlake.catalog.registry import Registry
        from embedlake.catalog.releases import Releases

        self.engine = engine
        self.insert = insert
        self._active: ContextVar[Connection | None] = ContextVar(
            f"catalog-{id(self)}", default=None
        )
        self.documents = Documents(self)
        self.registry = Registry(self)
        self.records = Records(self)
        self.events = Events(self)
        self.releases = Releases(self)
        self.keys = Keys(self)

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
        with translate_errors("transaction"), self.engine.begin() as conn:
            token = self._active.set(conn)
            try:
                yield conn
            finally:
                self._active.reset(token)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        active = self._active.get()
        if active is not None:
            yield active  # read what the open transaction has written
            return
        with translate_errors("query"), self.engine.connect() as conn:
            yield conn

    def migrate(self) -> None:
        with translate_errors("migration"):
            migrate.upgrade(self.engine)

    def check_schema(self) -> None:
        """Refuse to work on a database whose schema this code does not match."""
        with translate_errors("schema check"):
            found = migrate.current(self.engine)
        if found != migrate.head():
            raise ConfigError(
                f"catalog schema is at {found or 'nothing'}, this embedlake needs "
                f"{migrate.head()}: run `embedlake migrate`"
            )

    def close(self) -> None:
        self.engine.dispose()


def open_catalog(url: str, password: str | None = None) -> Catalog:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"catalog url is not a database URL: {exc}") from None
    if password is not None:
        parsed = parsed.set(password=password)
    module_name = ENGINES.get(parsed.get_backend_name())
    if module_name is None:
        raise ConfigError(
            f"catalog: no engine for {parsed.get_backend_name()!r} "
            f"(known: {', '.join(sorted(ENGINES))})"
        )
    module = importlib.import_module(module_name)
    engine = module.connect(parsed.render_as_string(hide_password=False))
    return Catalog(engine, module.insert)
