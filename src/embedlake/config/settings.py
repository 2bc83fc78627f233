"""The settings of one workspace, and how they are loaded: environment > file > defaults.

Nested fields use a double underscore in the environment: ``EMBEDLAKE_INDEX__EF_SEARCH=128``.
Relative paths and URLs are resolved against the workspace folder, so a workspace can be moved.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from embedlake.config.sections import (
    ApiSettings,
    CatalogSettings,
    EmbedSettings,
    GateSettings,
    IndexSettings,
    IngestSettings,
    LakeSettings,
    MapSettings,
    PassagesSettings,
    ReduceSettings,
    ReleaseSettings,
    RuntimeSettings,
    ServingSettings,
    TrainingSettings,
)
from embedlake.errors import ConfigError, NotFound

CONFIG_FILE = "embedlake.toml"
_ENV_PREFIX = "EMBEDLAKE_"
# EMBEDLAKE_* names that are not settings: the AWS wiring (see embedlake.aws.environment) and the
# benchmarks' and tests' data folders. Every other EMBEDLAKE_* name must be a setting.
NOT_SETTINGS = ("EMBEDLAKE_AWS_", "EMBEDLAKE_WORKSPACE_DIR", "EMBEDLAKE_BENCH_", "EMBEDLAKE_TEST_")


class Settings(BaseModel):
    """All settings of one workspace."""

    model_config = ConfigDict(extra="forbid")

    workspace: Path = Path(".")
    lake: LakeSettings = LakeSettings()
    catalog: CatalogSettings = CatalogSettings()
    ingest: IngestSettings = IngestSettings()
    embed: EmbedSettings = EmbedSettings()
    passages: PassagesSettings = PassagesSettings()
    index: IndexSettings = IndexSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    gate: GateSettings = GateSettings()
    reduce: ReduceSettings = ReduceSettings()
    releases: ReleaseSettings = ReleaseSettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    map: MapSettings = MapSettings()
    api: ApiSettings = ApiSettings()

    @classmethod
    def load(cls, workspace: Path, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings of ``workspace``: environment over its ``embedlake.toml`` over defaults."""
        workspace = workspace.resolve()
        path = workspace / CONFIG_FILE
        if not workspace.exists():
            raise NotFound(f"no workspace at {workspace}; `embedlake init {workspace}` makes one")
        if not workspace.is_dir():
            raise ConfigError(f"{workspace} is a file, not an embedlake workspace (a folder)")
        if not path.is_file():
            raise ConfigError(
                f"{workspace} is not an embedlake workspace (no {CONFIG_FILE}); "
                f"run `embedlake init {workspace}` first"
            )
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        _merge(data, _from_environment(os.environ if environ is None else environ))
        data["workspace"] = workspace
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid settings in {path} or EMBEDLAKE_* environment: {_summarise(exc)}"
            ) from None

    def resolve(self, location: str) -> str:
        """A lake or catalog location made absolute against the workspace (URLs pass through)."""
        if "://" in location:
            return location
        return str((self.workspace / location).resolve())

    def executor_id(self) -> str:
        """This worker's identity to the durable queue (see ``runtime.executor_id``)."""
        if self.runtime.executor_id:
            return self.runtime.executor_id
        if self.runtime_database_url().startswith("sqlite"):
            return "local"
        return socket.gethostname()

    def runtime_database_url(self) -> str:
        """The functions runtime's durable queue (a SQLite file beside the catalog by default)."""
        url = self.runtime.system_database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.workspace / url[len(prefix) :]).resolve())
        return url

    def catalog_url(self) -> str:
        """The SQLAlchemy URL of the catalog, with relative SQLite paths resolved."""
        url = self.catalog.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.workspace / url[len(prefix) :]).resolve())
        return url


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EMBEDLAKE_INDEX__EF_SEARCH=64`` → ``{"index": {"ef_search": "64"}}``.

    ``EMBEDLAKE_X_FILE=/run/secrets/x`` sets ``x`` from the file's content (the Docker and
    Kubernetes secrets convention), so secrets need not sit in the environment or the toml. A
    value in brackets is read as a JSON list (``EMBEDLAKE_RUNTIME__MODULES='["my.fns"]'``).
    """
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(_ENV_PREFIX) or key.startswith(NOT_SETTINGS):
            continue
        name = key[len(_ENV_PREFIX) :].lower()
        if name.endswith("_file"):
            name = name[: -len("_file")]
            try:
                value = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{key}: cannot read secret file: {exc.strerror}") from None
        node = out
        *parents, leaf = name.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _json_list(key, value) if value.lstrip().startswith("[") else value
    return out


def _json_list(key: str, value: str) -> list[Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: not a JSON list: {exc}") from None
    if not isinstance(parsed, list):
        raise ConfigError(f"{key}: not a JSON list")
    return parsed


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
