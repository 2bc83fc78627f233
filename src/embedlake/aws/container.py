"""What one Lambda container (or one Batch job) keeps between invocations: the workspace, opened
once from the environment, its functions, and the clients it made.

- The workspace comes from the environment only (``EMBEDLAKE_*``), over a default
  ``embedlake.toml`` written to ``EMBEDLAKE_WORKSPACE_DIR`` (``/tmp/embedlake``) on a cold start
  unless one is there already. It is never migrated here: ``embedlake migrate`` is a deploy step,
  and a catalog behind the code is a ConfigError.
- The catalog password is read once, at cold start, from the Secrets Manager secret named by
  ``EMBEDLAKE_AWS_DB_SECRET_ARN`` (RDS's own ``{"username", "password"}`` JSON, or a plain
  string), unless ``EMBEDLAKE_CATALOG__PASSWORD`` is set.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedlake.aws.environment import ENV_DB_SECRET, ENV_WORKSPACE
from embedlake.aws.payloads import LakeLocation
from embedlake.catalog import open_catalog
from embedlake.config import CONFIG_FILE, Settings, default_toml
from embedlake.errors import ConfigError
from embedlake.functions import Functions
from embedlake.functions.loading import load_functions
from embedlake.lake import open_lake
from embedlake.machine import cap_thread_pools
from embedlake.runtime.engines import Engine
from embedlake.workspace import Workspace

if TYPE_CHECKING:
    from embedlake.aws.api import Api


@dataclass
class Container:
    """What one Lambda container keeps between invocations. ``limited``: Lambda stops it at 15
    minutes and it has no GPU (a Batch job is not limited)."""

    ws: Workspace
    functions: Functions
    lake: LakeLocation
    limited: bool = True
    engine: Engine | None = None
    api: Api | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        """A boto3 client, made once (it is thread-safe; making one is not cheap)."""
        with self.lock:
            if service not in self.clients:
                import boto3

                self.clients[service] = boto3.client(service)
            return self.clients[service]


_container: Container | None = None
_opening = threading.Lock()


def container(*, limited: bool = True) -> Container:
    global _container
    with _opening:
        if _container is None:
            cap_thread_pools()  # an ECS or Batch task's CPU limit (Lambda's CPUs are its own)
            _container = open_container(os.environ, limited=limited)
        return _container


def open_container(environ: Mapping[str, str], *, limited: bool = True) -> Container:
    folder = Path(environ.get(ENV_WORKSPACE) or "/tmp/embedlake")
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / CONFIG_FILE).exists():
        (folder / CONFIG_FILE).write_text(default_toml(), encoding="utf-8")
    environ = dict(environ)
    if environ.get(ENV_DB_SECRET) and not environ.get("EMBEDLAKE_CATALOG__PASSWORD"):
        environ["EMBEDLAKE_CATALOG__PASSWORD"] = database_password(environ[ENV_DB_SECRET])
    settings = Settings.load(folder, environ)
    if settings.catalog_url().startswith("sqlite"):
        raise ConfigError(
            "on AWS Lambda the catalog must be a database every function shares "
            "(EMBEDLAKE_CATALOG__URL=postgresql+psycopg://...), not a SQLite file in /tmp"
        )
    lake = LakeLocation.parse(settings.resolve(settings.lake.url))
    # Workspace.from_settings, but closing the catalog when its schema check fails
    password = settings.catalog.password
    secret = password.get_secret_value() if password is not None else None
    catalog = open_catalog(settings.catalog_url(), secret)
    try:
        catalog.check_schema()  # never migrates: a catalog behind the code is a ConfigError
        ws = Workspace(
            settings, open_lake(settings.resolve(settings.lake.url), settings.lake), catalog
        )
        return Container(ws, load_functions(ws), lake, limited=limited)
    except BaseException:
        catalog.close()
        raise


def database_password(secret_arn: str) -> str:
    """The password in a Secrets Manager secret: RDS's JSON (``password``) or the whole string."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        text = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise ConfigError(f"{ENV_DB_SECRET}: cannot read the database secret: {exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return str(text)
    if isinstance(value, dict):
        if "password" not in value:
            raise ConfigError(f"{ENV_DB_SECRET}: the secret's JSON has no 'password'")
        return str(value["password"])
    return str(text)


def shutdown() -> None:
    """Close what the container holds (tests; a Lambda extension's SHUTDOWN)."""
    global _container
    with _opening:
        box, _container = _container, None
    if box is None:
        return
    if box.api is not None:
        box.api.close()
    if box.engine is not None:
        box.engine.close()
    box.ws.close()
