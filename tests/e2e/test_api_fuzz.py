"""Property-based fuzzing of the real server from its own OpenAPI document (schemathesis): no
request, valid or not, may get a 5xx, an undocumented status, or a body off its schema.

Bounded for CI: 25 examples per operation and mode (valid and invalid requests). Runs against a
throwaway workspace, since the fuzzer also deletes documents and moves aliases.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from embedlake.cli.releases import register_and_build as _build_now
from embedlake.ingest import ingest_path
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import collection
from tests.e2e.test_serve import ENV, Server, cli


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fuzz") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        _build_now(ws, train(ws, name="lsa-a", kind="lsa", components=64)[0])
    key = json.loads(cli("keys", "create", str(root), "--scope", "admin", "--json"))["key"]
    server = Server(root, root.parent / "serve.log")
    try:
        yield {"url": server.url, "key": key, "log": server.log}
    finally:
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_no_request_breaks_the_api(fuzzed: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed['url']}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzed['key']}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every route is in the document
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def fuzz(case: Any) -> None:
                # every default check but "schema-valid data is accepted": some valid-looking
                # requests are refused on purpose (a vector of the wrong dimension, a text over
                # api.max_text_chars), which the schema cannot state
                case.call_and_validate(
                    base_url=fuzzed["url"],
                    headers=headers,
                    excluded_checks=[positive_data_acceptance],
                )

            try:
                fuzz()
            except Unsatisfiable:
                # no invalid request can be made for an operation without inputs (/healthz)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # collect every operation's failure, then report them all
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    metrics = httpx.get(f"{fuzzed['url']}/metrics").text
    sent = sum(
        float(n) for n in re.findall(r"^embedlake_http_requests_total\{.*\} (\S+)$", metrics, re.M)
    )
    assert sent >= 300  # the fuzzer did reach the server
    assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())


def test_the_fuzzed_server_logged_no_crash(fuzzed: dict[str, Any]) -> None:
    log = Path(fuzzed["log"]).read_text()
    assert "Traceback" not in log and "unexpected error" not in log
