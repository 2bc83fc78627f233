"""Secrets come from the environment or *_FILE files, reach the servers that check them, and are
never printed: PostgreSQL with a password-checked role, and the S3 lake's keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedlake import Workspace
from embedlake.config import Settings
from embedlake.errors import CatalogError
from tests.conftest import production_environ
from tests.servers import Postgres

PASSWORD = "pw-7d1c0b5e-never-print-me"


def test_a_password_from_a_file_opens_postgres_and_is_never_shown(
    tmp_path: Path, postgres: Postgres, s3: object
) -> None:
    base = production_environ(postgres, s3)
    url = postgres.role("embedlake_app", PASSWORD, base["EMBEDLAKE_CATALOG__URL"])
    secret = tmp_path / "db-password"
    secret.write_text(PASSWORD + "\n")  # as `aws secretsmanager ... > file` writes it
    s3_secret = tmp_path / "s3-secret"
    s3_secret.write_text("testing")
    env = {
        **base,
        "EMBEDLAKE_CATALOG__URL": url,
        "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": url,
        "EMBEDLAKE_CATALOG__PASSWORD_FILE": str(secret),
        "EMBEDLAKE_LAKE__SECRET_ACCESS_KEY_FILE": str(s3_secret),
    }
    del env["EMBEDLAKE_LAKE__SECRET_ACCESS_KEY"]
    ws = tmp_path / "ws"
    with Workspace.init(ws, environ=env) as w:  # the role's password was checked (scram)
        w.lake.put("raw/notes/a.txt", b"hello")
        assert w.lake.get("raw/notes/a.txt") == b"hello"
        settings = w.settings
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()
    assert PASSWORD not in str(settings.catalog.model_dump())

    # the CLI, verbose, prints nothing secret; and a wrong password is refused, unprinted
    proc = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", "-v", "status", str(ws), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + PASSWORD)
    with pytest.raises(CatalogError) as refused:
        Workspace.open(ws, environ={**env, "EMBEDLAKE_CATALOG__PASSWORD_FILE": str(wrong)})
    assert "password authentication failed" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert not Settings.load(ws, environ={}).catalog.password  # the toml holds no secret
