"""Shared fixtures: workspaces in temporary folders and the team's test collections."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Each xdist worker computes with one thread (torch and faiss read this, and so do the
# subprocesses tests start): workers of two threads each on two cores oversubscribe them, and
# spinning OpenMP threads waste the difference (Makefile: TEST_JOBS). Before anything imports torch.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from embedlake import Workspace

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (the team's machines and CI); override for elsewhere.
DATA = Path(os.environ.get("EMBEDLAKE_TEST_DATA", ROOT.parent / "shared" / "data"))


def collection(name: str) -> Path:
    path = DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.fail(
            f"test collection {path} is missing: the tests need ../shared/data beside "
            f"the repository (or EMBEDLAKE_TEST_DATA pointing at it)"
        )
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws", environ={}) as workspace:
        yield workspace


def small_collection(
    folder: Path, queries: int = 6, documents: int = 200, judged_per_query: int | None = None
) -> Path:
    """A BEIR folder cut from med: its first ``queries`` queries, their judged documents (at most
    ``judged_per_query`` of each, the judgments kept to those) and other documents up to
    ``documents`` in all. The same cut every time."""
    med = collection("med")
    header, *qrels = (med / "qrels" / "test.tsv").read_text().splitlines()
    keep_queries = {str(q) for q in range(1, queries + 1)}
    taken: dict[str, int] = {}
    judged = []
    for row in qrels:
        query = row.split("\t")[0]
        if query in keep_queries and taken.get(query, 0) < (judged_per_query or len(qrels)):
            taken[query] = taken.get(query, 0) + 1
            judged.append(row)
    wanted = {r.split("\t")[1] for r in judged}
    rows = [json.loads(line) for line in (med / "corpus.jsonl").read_text().splitlines()]
    docs = [r for r in rows if r["_id"] in wanted]
    docs += [r for r in rows if r["_id"] not in wanted][: documents - len(docs)]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in docs))
    asked = [json.loads(line) for line in (med / "queries.jsonl").read_text().splitlines()]
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in asked if q["_id"] in keep_queries)
    )
    (folder / "qrels" / "test.tsv").write_text("\n".join([header, *judged]) + "\n")
    return folder


def write_jsonl(path: Path, rows: list[object]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- real servers for the production engines ------------------------------------------------------
# Started once per run (see tests/servers.py): by the fixtures below when pytest runs in one process,
# by the xdist controller below for all its workers otherwise. On a machine without the `dev`
# extra's server packages these tests skip, saying how to enable them; CI sets
# REQUIRE_TEST_BACKENDS=1 so that there a missing server is a failure, never a skip.

_CONTROLLER_SERVERS: list[Any] = []


def pytest_configure(config: pytest.Config) -> None:
    # The xdist controller (numprocesses set, no workerinput) starts the servers before its workers
    # are spawned, so that they inherit the environment naming them.
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from tests import servers

        if not os.environ.get("ELTEST_POSTGRES_PORT"):
            with contextlib.suppress(ImportError, RuntimeError, OSError):  # the fixture reports it
                pg = servers.start_postgres()
                _CONTROLLER_SERVERS.append(pg)
                os.environ["ELTEST_POSTGRES_PORT"] = str(pg.port)
        if not os.environ.get("ELTEST_S3_ENDPOINT"):
            with contextlib.suppress(ImportError, RuntimeError, OSError):
                s3 = servers.start_moto_process()
                _CONTROLLER_SERVERS.append(s3)
                os.environ["ELTEST_S3_ENDPOINT"] = s3.endpoint


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # files with slow tests first: under `make test` (--dist loadfile --no-loadscope-reorder) the
    # workers start on the long files and the short ones fill in at the end, rather than a long
    # file starting last and running alone while the other worker idles
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _CONTROLLER_SERVERS:
        _CONTROLLER_SERVERS.pop().stop()


def _unavailable(what: str, exc: BaseException) -> None:
    message = (
        f"{what} is not available here ({type(exc).__name__}: {exc}); "
        "install the test servers with `pip install -e '.[dev,production]'`"
    )
    if os.environ.get("REQUIRE_TEST_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that put the catalog and the runtime's queue on each database engine (the
    embedded SQLite default, and this run's PostgreSQL)."""
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("postgres").database()
    return {"EMBEDLAKE_CATALOG__URL": url, "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": url}


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A PostgreSQL 18 + pgvector server for the run (the xdist controller's, or one of its own)."""
    from tests import servers

    try:
        server = servers.shared_postgres() or servers.start_postgres()
    except (ImportError, RuntimeError, OSError) as exc:
        _unavailable("PostgreSQL with pgvector", exc)
    yield server
    server.stop()  # a no-op on the controller's server


@pytest.fixture(scope="session")
def s3() -> Iterator[object]:
    """An S3 endpoint for the session (moto's standalone server, spoken to over HTTP)."""
    from tests import servers

    try:
        server = servers.shared_s3() or servers.start_s3()
    except (ImportError, OSError) as exc:
        _unavailable("an S3 endpoint (moto server)", exc)
    yield server
    server.stop()  # a no-op on the controller's server


def production_environ(postgres: object, s3: object, **extra: str) -> dict[str, str]:
    """EMBEDLAKE_* settings of a workspace on the production stack: a fresh PostgreSQL database as
    catalog, runtime queue and vector store, and a fresh S3 bucket as the lake."""
    from tests.servers import S3, Postgres

    assert isinstance(postgres, Postgres) and isinstance(s3, S3)
    url = postgres.database()
    return {
        "EMBEDLAKE_CATALOG__URL": url,
        "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": url,
        "EMBEDLAKE_LAKE__URL": f"s3://{s3.bucket()}/lake",
        "EMBEDLAKE_LAKE__ENDPOINT_URL": s3.endpoint,
        "EMBEDLAKE_LAKE__REGION": "us-east-1",
        "EMBEDLAKE_LAKE__ACCESS_KEY_ID": "testing",
        "EMBEDLAKE_LAKE__SECRET_ACCESS_KEY": "testing",
        "EMBEDLAKE_LAKE__SCAN_SECONDS": "0.5",
        **extra,
    }


# The first lines of a script run as a light serving node would be: installed before embedlake is
# imported, so that any import of the training stack, however indirect, fails as if not installed.
NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(script: str, *args: str, stdin: str | None = None) -> Any:
    """Run ``script`` (dedented) in a Python that cannot import the training stack, from the
    repository root; the JSON of the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH + textwrap.dedent(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


# -- passages: what an index of passages holds, rebuilt from the catalog for checks ---------------


def passage_texts(ws: Workspace, keys: list[str]) -> list[str]:
    """What the encoder read for each passage key: the document's text, or its title and the
    passage's span (embeddings.passages)."""
    from embedlake.index.keys import doc_of, span_of

    docs = ws.catalog.documents.get_many(list({doc_of(k) for k in keys}))
    out = []
    for key in keys:
        doc, span = docs[doc_of(key)], span_of(key)
        body = doc.text if span is None else doc.text[span[0] : span[1]]
        out.append(doc.full_text if span is None else f"{doc.title} {body}".strip())
    return out


def top_documents(keys: list[str], scores: Any, k: int) -> list[str]:
    """The ``k`` best documents by their best passage (MaxP), from passage keys and scores."""
    from embedlake.search.passages import collapse

    order = sorted(range(len(keys)), key=lambda i: -float(scores[i]))
    return [d for d, _, _ in collapse([(keys[i], float(scores[i])) for i in order], k)]


def documents_of(keys: list[str]) -> set[str]:
    from embedlake.index.keys import doc_of

    return {doc_of(k) for k in keys}
