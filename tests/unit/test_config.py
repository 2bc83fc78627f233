from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from embedlake.config import CONFIG_FILE, Settings, default_toml
from embedlake.errors import ConfigError


def _workspace(tmp_path: Path, toml: str = "") -> Path:
    (tmp_path / CONFIG_FILE).write_text(toml, encoding="utf-8")
    return tmp_path


def test_defaults_when_the_file_is_empty(tmp_path: Path) -> None:
    s = Settings.load(_workspace(tmp_path), environ={})
    assert s.index.engine == "auto"
    assert s.embed.batch_size == 32
    assert s.workspace == tmp_path.resolve()


def test_default_toml_round_trips_to_the_defaults(tmp_path: Path) -> None:
    s = Settings.load(_workspace(tmp_path, default_toml()), environ={})
    assert s.model_dump(exclude={"workspace"}) == Settings().model_dump(exclude={"workspace"})


def test_default_toml_lists_every_setting_but_the_secrets() -> None:
    text = default_toml()
    written = tomllib.loads(text)
    secrets = {("lake", "secret_access_key"), ("catalog", "password"), ("api", "key_pepper")}
    unset = {("index", k) for k in ("ef_search", "rescore", "nprobe")}  # toml has no null
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for key in section.model_fields:
                if (name, key) in unset:
                    assert f"\n# {key} = (unset)\n" in text, f"[{name}] {key}"
                    continue
                assert (name, key) in secrets or key in written[name], f"[{name}] {key}"


def test_environment_beats_file_beats_defaults(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, "[index]\nef_search = 50\nm = 12\n")
    s = Settings.load(ws, environ={"EMBEDLAKE_INDEX__EF_SEARCH": "77"})
    assert s.index.ef_search == 77  # environment
    assert s.index.m == 12  # file
    assert s.index.ef_construction == 200  # default


def test_secret_from_a_file_is_read_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n", encoding="utf-8")
    s = Settings.load(
        _workspace(tmp_path), environ={"EMBEDLAKE_CATALOG__PASSWORD_FILE": str(secret)}
    )
    assert s.catalog.password is not None
    assert s.catalog.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())


def test_missing_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EMBEDLAKE_CATALOG__PASSWORD_FILE"):
        Settings.load(
            _workspace(tmp_path),
            environ={"EMBEDLAKE_CATALOG__PASSWORD_FILE": str(tmp_path / "nope")},
        )


def test_lists_come_from_the_environment_as_json_and_wiring_names_are_not_settings(
    tmp_path: Path,
) -> None:
    environ = {
        "EMBEDLAKE_RUNTIME__MODULES": '["my_jobs", "more.jobs"]',
        "EMBEDLAKE_AWS_FUNCTION_INGEST": "stack-ingest",  # the AWS wiring, read by embedlake.aws
        "EMBEDLAKE_WORKSPACE_DIR": "/tmp/embedlake",
        "EMBEDLAKE_BENCH_DATA": "/data",
    }
    s = Settings.load(_workspace(tmp_path), environ=environ)
    assert s.runtime.modules == ["my_jobs", "more.jobs"]
    with pytest.raises(ConfigError, match="EMBEDLAKE_RUNTIME__MODULES: not a JSON list"):
        Settings.load(_workspace(tmp_path), environ={"EMBEDLAKE_RUNTIME__MODULES": "[my_jobs"})
    with pytest.raises(ConfigError, match="awsfunction"):  # a typo is still refused
        Settings.load(_workspace(tmp_path), environ={"EMBEDLAKE_AWSFUNCTION": "x"})


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ('[index]\nengine = "annoy"\n', {}, "index.engine"),
        ("[embed]\nbatch_size = 0\n", {}, "embed.batch_size"),
        ("[index]\nunknown = 1\n", {}, "index.unknown"),
        ("", {"EMBEDLAKE_INDEX__M": "many"}, "index.m"),
        ("[embed]\nprocesses = 0\n", {}, "embed.processes"),
        ("", {"EMBEDLAKE_EMBED__PROCESSES": "several"}, "embed.processes"),
        ("not toml at all [", {}, "not valid TOML"),
        ("[ingest]\nmax_record_bytes = true\n", {}, "ingest.max_record_bytes"),  # not 1
        ("[api]\nkey_cache_seconds = false\n", {}, "api.key_cache_seconds"),  # not 0.0
    ],
)
def test_invalid_settings_name_the_field(
    tmp_path: Path, toml: str, env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        Settings.load(_workspace(tmp_path, toml), environ=env)


def test_a_folder_without_settings_is_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="embedlake init"):
        Settings.load(tmp_path, environ={})


def test_relative_locations_resolve_against_the_workspace(tmp_path: Path) -> None:
    s = Settings.load(_workspace(tmp_path), environ={})
    assert s.resolve("lake") == str(tmp_path.resolve() / "lake")
    assert s.resolve("s3://bucket/x") == "s3://bucket/x"
    assert s.catalog_url() == f"sqlite:///{tmp_path.resolve() / 'catalog.db'}"


def test_a_worker_is_local_on_sqlite_and_its_host_on_postgres(tmp_path: Path) -> None:
    import socket

    ws = _workspace(tmp_path)
    assert Settings.load(ws, environ={}).executor_id() == "local"
    pg = {"EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": "postgresql+psycopg://u@db/x"}
    assert Settings.load(ws, environ=pg).executor_id() == socket.gethostname()
    mine = {**pg, "EMBEDLAKE_RUNTIME__EXECUTOR_ID": "worker-2"}
    assert Settings.load(ws, environ=mine).executor_id() == "worker-2"


def test_a_workspace_path_may_be_a_string(tmp_path: Path) -> None:
    from embedlake import Workspace

    with Workspace.init(str(tmp_path / "ws"), environ={}) as ws:
        assert ws.settings.workspace == (tmp_path / "ws").resolve()
    with Workspace.open(str(tmp_path / "ws"), environ={}) as ws:
        assert ws.catalog.documents.count() == 0
