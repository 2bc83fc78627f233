"""The catalog object: one database with its repositories, and opening one by URL."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError

from embedlake.catalog import migrate
from embedlake.catalog.benchmarks import Benchmarks
from embedlake.catalog.database import Database, InsertRows, translate_errors
from embedlake.catalog.documents import Documents
from embedlake.catalog.keys import Keys
from embedlake.catalog.outbox import Events
from embedlake.catalog.registry import Registry
from embedlake.catalog.releases import Releases
from embedlake.errors import ConfigError

# dialect name → engine module; imported lazily (a PostgreSQL driver is only needed when used).
ENGINES: dict[str, str] = {
    "sqlite": "embedlake.catalog.sqlite",
    "postgresql": "embedlake.catalog.postgres",
}


class Catalog(Database):
    """One database, its upsert dialect, and the repositories over it."""

    def __init__(self, engine: Engine, insert: Callable[..., Any], insert_rows: InsertRows) -> None:
        super().__init__(engine, insert, insert_rows)
        self.documents = Documents(self)
        self.registry = Registry(self)
        self.benchmarks = Benchmarks(self)
        self.events = Events(self)
        self.releases = Releases(self)
        self.keys = Keys(self)

    def migrate(self) -> None:
        with translate_errors("migration"):
            migrate.upgrade(self.engine)

    def revision(self) -> str | None:
        """The schema revision the database is at (None: no schema, a new or lost catalog)."""
        with translate_errors("schema check"):
            return migrate.current(self.engine)

    def check_schema(self, lake_holds: Callable[[], list[str]] | None = None) -> None:
        """Refuse to work on a database whose schema this code does not match.

        ``lake_holds`` names the lake's folders that hold data: a catalog without a schema over
        such a lake was lost, and `migrate` would start an empty one beside what the lake keeps.
        """
        found = self.revision()
        if found == migrate.head():
            return
        if found is not None and found not in migrate.known()[0]:
            raise ConfigError(migrate.unknown_revision(found))
        held = lake_holds() if found is None and lake_holds is not None else []
        if held:
            raise ConfigError(
                f"the catalog holds no schema, but the lake holds data ({', '.join(held)}): the "
                "catalog was lost or damaged; run `embedlake recover` to rebuild it from the lake "
                "(`embedlake migrate` would start an empty catalog)"
            )
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
    return Catalog(engine, module.insert, module.insert_rows)
