"""A workspace: one settings file, one lake, one catalog, wired together.

Entry points (the CLI today) open a workspace once and pass it down; nothing below reads settings
or the environment on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from embedlake.catalog import Catalog, journal, open_catalog
from embedlake.config import CONFIG_FILE, Settings, default_toml
from embedlake.errors import ConfigError, Conflict
from embedlake.lake import Lake, open_lake


class Workspace:
    def __init__(self, settings: Settings, lake: Lake, catalog: Catalog) -> None:
        self.settings = settings
        self.lake = lake
        self.catalog = catalog
        # Every object written is recorded in the catalog's event log (the outbox that the
        # functions runtime reads), in the same process as the write.
        lake.subscribe(catalog.events.add_object_event)
        # And the other way: what only the catalog would know is kept in the lake as it is
        # written, so that `embedlake recover` can rebuild the catalog (see catalog.journal).
        catalog.on_record(self._keep_record)

    def _keep_record(self, key: str, record: dict[str, Any]) -> None:
        self.lake.put(key, journal.encode(record))

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        environ: Mapping[str, str] | None = None,
        *,
        guard: bool = False,
    ) -> Workspace:
        """Create a workspace (settings file, lake, migrated catalog); safe to run twice.

        ``guard`` refuses to start a catalog where there is none over a lake that holds data (a
        lost catalog: `embedlake recover` rebuilds it, an empty one would hide the lake)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a folder")
        config = path / CONFIG_FILE
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not config.exists():
                config.write_text(default_toml(), encoding="utf-8")
        except OSError as exc:  # a parent that is a file, no permission, a read-only place
            raise ConfigError(f"cannot create the workspace {path}: {exc.strerror}") from None
        settings = Settings.load(path, environ)
        catalog = _open_catalog(settings)
        try:
            lake = open_lake(settings.resolve(settings.lake.url), settings.lake)
            held = lake_holds(lake) if guard and catalog.revision() is None else []
            if held:
                raise Conflict(
                    f"the catalog holds no schema, but the lake holds data ({', '.join(held)}): "
                    "starting an empty catalog would lose its documents' history, releases, "
                    "aliases and keys. Run `embedlake recover` to rebuild the catalog from the "
                    "lake, or `embedlake migrate --force` to start an empty one anyway"
                )
            catalog.migrate()
        except BaseException:
            catalog.close()
            raise
        return cls(settings, lake, catalog)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
    ) -> Workspace:
        return cls.from_settings(Settings.load(Path(path), environ))

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        """Open with settings already read (a worker process receives them from its driver)."""
        catalog = _open_catalog(settings)
        try:
            lake = open_lake(settings.resolve(settings.lake.url), settings.lake)
            catalog.check_schema(lambda: lake_holds(lake))
        except BaseException:
            catalog.close()  # its pooled connections would otherwise leak
            raise
        return cls(settings, lake, catalog)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# Folders only embedlake's own work fills (raw/ may hold files dropped by hand): a lake with any
# of them has a catalog's worth of state behind it.
KEPT = ("curated/", "models/", "releases/", "embeddings/")


def lake_holds(lake: Lake) -> list[str]:
    """The folders of ``KEPT`` that hold at least one object."""
    return [prefix for prefix in KEPT if next(iter(lake.list(prefix)), None) is not None]


def _open_catalog(settings: Settings) -> Catalog:
    password = settings.catalog.password
    return open_catalog(
        settings.catalog_url(), password.get_secret_value() if password is not None else None
    )
