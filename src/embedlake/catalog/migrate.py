"""Schema migrations with Alembic, configured in code (no alembic.ini needed at run time).

Alembic is imported only to migrate: reading the head and the current revision (which every
command that opens a workspace does) needs neither Alembic nor its script machinery, and costs a
quarter of a second less at start-up (``embedlake status``; docs/benchmarks.md section 15).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from embedlake.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _assigned(tree: ast.Module, name: str) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                value = ast.literal_eval(node.value) if node.value is not None else None
                return value if isinstance(value, str) else None
    return None


@functools.cache
def known() -> tuple[frozenset[str], frozenset[str]]:
    """Every revision this code's migrations name, and those named as a parent (read from the
    migration files' ``revision``/``down_revision``)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("[0-9]*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        revision = _assigned(tree, "revision")
        if revision is not None:
            revisions.add(revision)
        parent = _assigned(tree, "down_revision")
        if parent is not None:
            parents.add(parent)
    return frozenset(revisions), frozenset(parents)


@functools.cache
def head() -> str:
    """The newest revision this code knows: the one no migration names as its parent (the
    history is linear)."""
    revisions, parents = known()
    heads = set(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the catalog's migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current(engine: Engine) -> str | None:
    """The revision the catalog's schema is at; None for an empty database."""
    from sqlalchemy import inspect, text  # here: `head` is read without SQLAlchemy (catalog.peek)

    with engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        row = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).first()
        return None if row is None else str(row[0])


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already. A schema at a
    revision this code does not know (a newer embedlake's) is refused, not guessed at."""
    from alembic import command

    found = current(engine)
    if found is not None and found not in known()[0]:
        raise ConfigError(unknown_revision(found))

    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def unknown_revision(found: str) -> str:
    return (
        f"the catalog's schema is at revision {found!r}, which this embedlake does not know "
        f"(its newest is {head()}): a newer embedlake wrote it; use that version, or restore a "
        "backup (`embedlake import`)"
    )
