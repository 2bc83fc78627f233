"""The catalog: the production database of documents, models, runs, indexes and results.

SQLAlchemy Core over one engine module per database (``sqlite.py``, ``postgres.py``), so
that PostgreSQL is a connection-string change. Repositories group the queries by subject.

The package's names load on first use (PEP 562), so that ``catalog.peek`` can read a SQLite
catalog with the standard library alone: `embedlake status` does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedlake.catalog.catalog import ENGINES, Catalog, open_catalog

__all__ = ["ENGINES", "Catalog", "open_catalog"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from embedlake.catalog import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
