"""A workspace: one settings file, one lake, one catalog, wired together.

Entry points (the CLI today) open a workspace once and pass it down; nothing below reads settings
or the environment on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from embedlake.catalog import Catalog, open_catalog
from embedlake.config import CONFIG_FILE, Settings, default_toml
from embedlake.errors import ConfigError
from embedlake.lake import Lake, open_lake


class Workspace:
    def __init__(self, settings: Settings, lake: Lake, catalog: Catalog) -> None:
        self.settings = settings
        self.lake = lake
        self.catalog = catalog
        # Every object written is recorded in the catalog's event log (the outbox that the
        # functions runtime reads), in the same process as the write.
        lake.subscribe(catalog.events.add_object_event)

    @classmethod
    def init(cls, path: Path, environ: Mapping[str, str] | None = None) -> Workspace:
        """Create a workspace (settings file, lake, migrated catalog); safe to run twice."""
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        config = path / CONFIG_FILE
        if not config.exists():
            config.write_text(default_toml(), encoding="utf-8")
        settings = Settings.load(path, environ)
        catalog = _open_catalog(settings)
        catalog.migrate()
        return cls(settings, open_lake(settings.resolve(settings.lake.url), settings.lake), catalog)

    @classmethod
    def open(cls, path: Path, environ: Mapping[str, str] | None = None) -> Workspace:
        return cls.from_settings(Settings.load(path, environ))

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        """Open with settings already read (a worker process receives them from its driver)."""
        catalog = _open_catalog(settings)
        try:
            catalog.check_schema()
            lake = open_lake(settings.resolve(settings.lake.url), settings.lake)
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


def _open_catalog(settings: Settings) -> Catalog:
    password = settings.catalog.password
    return open_catalog(
        settings.catalog_url(), password.get_secret_value() if password is not None else None
    )
