"""The Lambda entry points, invoked with recorded AWS payload shapes (tests/aws/events/) against
moto's S3 over HTTP and the throwaway PostgreSQL: ingest from S3 (direct, SQS, EventBridge),
partial batch failures, schedules, dispatch of chained events, and the search API via Mangum."""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import uuid4

import pytest

from embedlake import Workspace
from embedlake.aws.events import (
    LakeLocation,
    ObjectNotice,
    Tick,
    invoke_payload,
    messages,
    units,
)
from embedlake.cli.releases import _build_now
from embedlake.config import default_toml
from embedlake.errors import ConfigError, InputError
from embedlake.events import DOCUMENTS_CHANGED, OBJECT_CREATED, SCHEDULE, Event
from embedlake.functions import Functions, schedule
from embedlake.functions.context import Context
from embedlake.ingest import ingest_path
from embedlake.lake import created_event_id
from embedlake.runtime.runtime import CURSOR
from embedlake.training.train import train
from tests.conftest import production_environ, write_jsonl
from tests.servers import S3

EVENTS = Path(__file__).parent / "events"
FIXTURE_BUCKET = "embedlake-test-bucket"  # the bucket named in the recorded payloads
FAST = {"EMBEDLAKE_EMBED__MODEL": "lsa", "EMBEDLAKE_MAP__METHOD": "pca"}
FRUIT = "".join(
    json.dumps({"_id": f"f{i}", "text": f"{fruit} pie, recipe number {i}"}) + "\n"
    for i, fruit in enumerate(["apple", "banana", "cherry", "plum", "pear", "quince"])
).encode()

# A function of this module's own, registered through runtime.modules, for the schedule test.
functions = Functions()


@functions.function(on=schedule("0 3 * * *"), name="nightly", retries=0)
def nightly(event: Event, ctx: Context) -> dict[str, Any]:
    return {"due": event.data["due"], "cron": event.subject}


# -- how the entry points are reached -------------------------------------------------------------


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the parts handlers read)."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: uuid4().hex)
    deadline: float = field(default_factory=lambda: time.monotonic() + 900)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class Lambda:
    handlers: ModuleType

    def invoke(self, entry: str, payload: dict[str, Any]) -> dict[str, Any]:
        """As the Lambda runtime does: a JSON payload in, the result serialised as JSON."""
        handler = getattr(self.handlers, entry)
        result: dict[str, Any] = handler(json.loads(json.dumps(payload)), LambdaContext(entry))
        return dict(json.loads(json.dumps(result)))


@pytest.fixture
def installed() -> Lambda:
    """The Lambda code under test. SEAM: today the handlers imported from the source tree, in this
    process (a warm container across one test). Issue 9 wants the packaged artifact: once
    `embedlake aws package` exists, build it here, unpack it into a clean directory and return a
    Lambda whose ``invoke`` runs each entry point in a subprocess with only that directory on
    sys.path, so that a file missing from the package fails these tests."""
    return Lambda(importlib.import_module("embedlake.aws.handlers"))


@pytest.fixture
def env(
    postgres: object, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The Lambda's environment (a fresh database and bucket), set in os.environ where handlers
    read it; the container's cached workspace is dropped afterwards."""
    from embedlake.aws import handlers

    values = {**production_environ(postgres, s3), **FAST}
    for name in list(os.environ):
        if name.startswith("EMBEDLAKE_"):
            monkeypatch.delenv(name)
    for name, value in {**values, handlers.ENV_WORKSPACE: str(tmp_path / "lambda")}.items():
        monkeypatch.setenv(name, value)
    yield values
    handlers.shutdown()


@pytest.fixture
def admin(env: dict[str, str], tmp_path: Path) -> Iterator[Workspace]:
    """The deploy step (`embedlake migrate`) and a view of the catalog and lake for assertions."""
    with Workspace.init(tmp_path / "admin", environ=env) as ws:
        yield ws


@pytest.fixture
def bucket(env: dict[str, str]) -> str:
    return env["EMBEDLAKE_LAKE__URL"][len("s3://") :].split("/")[0]


def payload(name: str, bucket: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text().replace(FIXTURE_BUCKET, bucket))
    return loaded


def _events(ws: Workspace, kind: str) -> list[Event]:
    return [e for e in ws.catalog.events.all() if e.type == kind]


# -- S3-triggered functions ------------------------------------------------------------------------


def test_an_s3_put_is_ingested_once_however_often_and_however_it_arrives(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    put = s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
    event_id = created_event_id("raw/fruit/pies.jsonl", put["ETag"].strip('"'))

    out = installed.invoke("ingest", payload("s3-put.json", bucket))
    [done] = out["invocations"]
    assert (done["invocation"], done["status"], done["emitted"]) == (
        f"{event_id}:ingest",
        "succeeded",
        1,
    )
    assert admin.catalog.documents.count() == 6
    assert [e.id for e in _events(admin, OBJECT_CREATED) if e.key == "raw/fruit/pies.jsonl"] == [
        event_id
    ]
    [changed] = _events(admin, DOCUMENTS_CHANGED)
    assert changed.data == {"raw_key": "raw/fruit/pies.jsonl", "changed": 6}
    assert "raw/fruit/pies.jsonl" in admin.catalog.events.seen("raw/")

    # S3 delivers at least once; EventBridge may deliver the same put too: one invocation
    again = installed.invoke("ingest", payload("s3-put.json", bucket))
    via_eventbridge = installed.invoke("ingest", payload("eventbridge-s3.json", bucket))
    assert again["invocations"][0]["status"] == via_eventbridge["invocations"][0]["status"]
    assert again["invocations"][0]["status"] == "duplicate"
    [run] = admin.catalog.events.invocations(function="ingest")
    assert (run.id, run.status, run.attempts, run.error) == (
        f"{event_id}:ingest",
        "succeeded",
        1,
        None,
    )
    assert len(_events(admin, DOCUMENTS_CHANGED)) == 1


def test_an_sqs_batch_reports_only_the_message_that_failed(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="lake/raw/fruit/my pies+more.jsonl", Body=FRUIT)
    client.put_object(Bucket=bucket, Key="lake/raw/bad source!/x.jsonl", Body=FRUIT)
    batch = payload("sqs-s3-put.json", bucket)
    good = batch["Records"][0]
    body = good["body"]

    def message(message_id: str, body: str) -> dict[str, Any]:
        return {**good, "messageId": message_id, "body": body}

    sns = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": body}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}
    batch["Records"] += [
        # "raw/bad source!/" is no valid source: ingest raises, whatever the retry
        message("bad", body.replace("raw/fruit/my+pies%2Bmore.jsonl", "raw/bad+source%21/x.jsonl")),
        message("sns", json.dumps(sns)),  # the same put again, through SNS: a duplicate
        message("test", json.dumps(test_event)),  # sent when the notification is configured
        message("outside", body.replace("lake/raw/", "elsewhere/raw/")),  # not in the lake
    ]
    out = installed.invoke("ingest", batch)
    assert out == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert admin.catalog.documents.count() == 6
    assert set(admin.catalog.events.seen("raw/")) == {
        "raw/fruit/my pies+more.jsonl",  # decoded: "+" is a space, "%2B" a plus
        "raw/bad source!/x.jsonl",
    }
    runs = {r.function + " " + r.status: r for r in admin.catalog.events.invocations()}
    assert set(runs) == {"ingest succeeded", "ingest retrying"}
    assert "invalid source name 'bad source!'" in (runs["ingest retrying"].error or "")

    # SQS delivers the failed message again, alone: it fails again, one attempt more
    again = installed.invoke("ingest", {"Records": [batch["Records"][1]]})
    assert again == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert admin.catalog.events.invocation(runs["ingest retrying"].id).attempts == 2


# -- schedules and chained events -----------------------------------------------------------------


def test_a_scheduled_event_runs_its_function_once_per_tick(
    installed: Lambda, env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    # a workspace folder that ships its own embedlake.toml (here: to register this module's
    # functions, which no EMBEDLAKE_* variable can, runtime.modules being a list)
    folder = Path(os.environ["EMBEDLAKE_WORKSPACE_DIR"])
    folder.mkdir(parents=True)
    toml = default_toml().replace("modules = []", 'modules = ["tests.aws.test_handlers"]')
    (folder / "embedlake.toml").write_text(toml)
    with Workspace.init(tmp_path / "admin", environ=env) as admin:
        tick = payload("eventbridge-schedule.json", bucket)
        out = installed.invoke("nightly", tick)  # an entry point for a function of settings
        [done] = out["invocations"]
        assert done["result"] == {"due": "2026-03-02T03:00:00+00:00", "cron": "0 3 * * *"}
        assert installed.invoke("nightly", tick)["invocations"][0]["status"] == "duplicate"
        [event] = _events(admin, SCHEDULE)
        assert event.id == "schedule:nightly:2026-03-02T03:00:00+00:00"
        with pytest.raises(InputError, match="no schedule trigger"):
            installed.invoke("ingest", tick)
        with pytest.raises(ConfigError, match=r"no function 'no-such' .*nightly"):
            installed.invoke("no_such", tick)


def test_dispatch_routes_the_events_a_function_emitted(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
    installed.invoke("ingest", payload("s3-put.json", bucket))
    [changed] = _events(admin, DOCUMENTS_CHANGED)

    # no EMBEDLAKE_AWS_FUNCTION_* variables: each invocation runs inline, in the dispatcher
    out = installed.invoke("dispatch", payload("eventbridge-schedule.json", bucket))
    assert (out["invoked"], out["retried"]) == (2, 0)  # documents.changed: embed-new, retrain
    runs = {r.function: r for r in admin.catalog.events.invocations()}
    assert set(runs) == {"ingest", "embed-new", "retrain-on-growth"}  # ingest ran once only
    assert runs["retrain-on-growth"].id == f"{changed.id}:retrain-on-growth"
    assert runs["retrain-on-growth"].status == "succeeded"
    # embed-new is heavy: refused on Lambda without Ray, dead-lettered at once with the reason
    assert runs["embed-new"].status == "dead"
    assert 'runtime.engine = "ray"' in (runs["embed-new"].error or "")
    assert admin.catalog.events.get_state(CURSOR) == str(admin.catalog.events.latest_seq())

    again = installed.invoke("dispatch", {})
    assert (again["events"], again["invoked"], again["retried"]) == (0, 0, 0)
    # what dispatch sends a function's own Lambda, delivered there: the same invocation
    sent = installed.invoke("retrain_on_growth", invoke_payload(changed))
    assert sent["invocations"][0]["status"] == "duplicate"
    with pytest.raises(ConfigError, match="no GPU, 15 minutes"):
        installed.invoke("embed_new", invoke_payload(changed))


# -- the HTTP API ----------------------------------------------------------------------------------


def test_the_api_answers_searches_from_api_gateway_and_function_urls(
    installed: Lambda, admin: Workspace, bucket: str, tmp_path: Path
) -> None:
    dishes = ["pie", "tart", "jam", "crumble", "sorbet", "salad"]
    fruits = ["apple", "banana", "cherry", "plum", "pear", "quince"]
    rows = [{"_id": f"{f}-{d}", "text": f"{f} {d} with {f}"} for f in fruits for d in dishes]
    ingest_path(admin, write_jsonl(tmp_path / "dishes.jsonl", rows), source="dishes")
    prefix, _ = train(admin, name="lsa-aws", kind="lsa", components=8)
    _build_now(admin, prefix)
    key, _ = admin.catalog.keys.create(["search"], "lambda test")

    for name in ("apigw-v2-http.json", "function-url.json"):
        request = payload(name, bucket)
        request["headers"]["authorization"] = f"Bearer {key}"
        response = installed.invoke("api", request)
        assert response["statusCode"] == 200, response
        found = json.loads(response["body"])
        assert found["alias"] == "production" and len(found["results"]) == 3
        assert "cherry-pie" in [hit["id"] for hit in found["results"]]
    state = installed.handlers.container().api
    unauthenticated = installed.invoke("api", payload("function-url.json", bucket))
    assert unauthenticated["statusCode"] == 401
    assert installed.handlers.container().api is state  # loaded once per container


# -- the workspace from the environment -----------------------------------------------------------


def test_a_handler_never_migrates_and_needs_a_shared_catalog(
    installed: Lambda, env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="embedlake migrate"):  # the database is empty
        installed.invoke("ingest", payload("s3-put.json", bucket))
    monkeypatch.setenv("EMBEDLAKE_CATALOG__URL", "sqlite:///catalog.db")
    with pytest.raises(ConfigError, match="every function shares"):
        installed.invoke("ingest", payload("s3-put.json", bucket))


# -- payload shapes, without servers --------------------------------------------------------------

LAKE = LakeLocation.parse(f"s3://{FIXTURE_BUCKET}/lake")


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def test_recorded_payloads_parse_into_lake_keys_ticks_and_events() -> None:
    assert messages(_fixture("s3-put.json"), LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")
    ]
    assert messages(_fixture("eventbridge-s3.json"), LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")
    ]
    batch, parts = units(_fixture("sqs-s3-put.json"))
    assert batch and [p[0] for p in parts] == ["059f36b4-87a3-44ab-83d2-661975830a7d"]
    assert messages(parts[0][1], LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/my pies+more.jsonl")
    ]
    [tick] = messages(_fixture("eventbridge-schedule.json"), LAKE)
    assert isinstance(tick, Tick) and tick.time.isoformat() == "2026-03-02T03:00:00+00:00"
    assert units(_fixture("s3-put.json"))[0] is False
    event = Event(DOCUMENTS_CHANGED, "fruit", {"changed": 6})
    assert messages(invoke_payload(event), LAKE) == [event]
    assert messages(json.dumps(event.to_json()), LAKE) == [event]  # an SQS body


def test_payloads_that_are_not_ours_are_dropped_or_refused() -> None:
    other = LakeLocation.parse("s3://another-bucket/lake")
    assert messages(_fixture("s3-put.json"), other) == []
    assert messages(_fixture("s3-put.json"), LakeLocation.parse(f"s3://{FIXTURE_BUCKET}/x")) == []
    assert messages({"Event": "s3:TestEvent", "Bucket": FIXTURE_BUCKET}, LAKE) == []
    sns_lambda = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(
        _fixture("s3-put.json"))}}]}  # fmt: skip
    assert messages(sns_lambda, LAKE) == [ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")]
    with pytest.raises(InputError, match="not an AWS event embedlake knows"):
        messages({"hello": "world"}, LAKE)
    with pytest.raises(InputError, match="not an AWS event embedlake knows"):
        messages("not json", LAKE)
    with pytest.raises(ConfigError, match="s3:// URL"):
        LakeLocation.parse("/data/lake")
