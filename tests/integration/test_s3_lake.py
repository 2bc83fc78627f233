"""A workspace whose lake is S3 (moto's server, spoken to over HTTP as AWS would be): files that other
clients write to the bucket are noticed by scans or through SQS notifications and end ingested,
embedded and searchable; the warehouse reads the bucket's Parquet."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from embedlake import Workspace, warehouse
from embedlake.embeddings.batch import embed
from embedlake.errors import ConfigError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED
from embedlake.ingest import delete_document, ingest_object, ingest_path
from embedlake.lake import created_event_id
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.runtime import Runtime
from embedlake.runtime.s3events import SqsConsumer
from embedlake.search.searcher import Searcher
from tests.conftest import collection, write_jsonl
from tests.servers import S3

FAST = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_MAP__METHOD": "pca",
    "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.02",
    "EMBEDLAKE_RUNTIME__RETRY_BASE_SECONDS": "0.05",
}
FRUIT = "".join(
    json.dumps({"_id": f"f{i}", "text": f"{fruit} pie, recipe number {i}"}) + "\n"
    for i, fruit in enumerate(["apple", "banana", "cherry", "plum", "pear", "quince"])
).encode()


def _environ(s3: S3, bucket: str, **extra: str) -> dict[str, str]:
    """An S3 lake in ``bucket`` (under lake/); catalog and runtime queue stay SQLite files in the
    workspace (PostgreSQL is covered by the runtime and catalog suites)."""
    return {
        **FAST,
        "EMBEDLAKE_LAKE__URL": f"s3://{bucket}/lake",
        "EMBEDLAKE_LAKE__ENDPOINT_URL": s3.endpoint,
        "EMBEDLAKE_LAKE__REGION": "us-east-1",
        "EMBEDLAKE_LAKE__ACCESS_KEY_ID": "testing",
        "EMBEDLAKE_LAKE__SECRET_ACCESS_KEY": "testing",
        "EMBEDLAKE_LAKE__SCAN_SECONDS": "0.5",
        **extra,
    }


@pytest.fixture
def bucket(s3: S3) -> str:
    return s3.bucket()


@pytest.fixture
def ws(s3: S3, bucket: str, tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws", environ=_environ(s3, bucket)) as workspace:
        yield workspace


def _until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _events(ws: Workspace, kind: str, key: str) -> list[str]:
    return [e.id for _, e in ws.catalog.events.after(0, 10_000) if (e.type, e.key) == (kind, key)]


def test_a_file_written_straight_to_the_bucket_ends_searchable(
    ws: Workspace, s3: S3, bucket: str
) -> None:
    assert ws.lake.local_path("raw/fruit/pies.jsonl") is None
    with Runtime(ws) as runtime:
        etag = s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
        # no embedlake write: only the periodic scan (every 0.5 s) can notice it
        _until("the scan noticed it", lambda: bool(ws.catalog.events.seen("raw/fruit/pies")))
        assert runtime.wait_idle(60)
    etag = etag["ETag"].strip('"')
    assert ws.catalog.events.seen("raw/") == {"raw/fruit/pies.jsonl": (etag, len(FRUIT))}
    assert _events(ws, OBJECT_CREATED, "raw/fruit/pies.jsonl") == [
        created_event_id("raw/fruit/pies.jsonl", etag)
    ]
    runs = ws.catalog.events.invocations()
    assert {i.function for i in runs} >= {"ingest", "embed-new"}
    assert {i.status for i in runs} == {"succeeded"}
    assert ws.catalog.documents.count() == 6
    # the index and the model were read back from the bucket (no local path to load in place)
    hits = Searcher(ws).search("cherry pie", 3)
    assert hits[0].id == "f2"
    # what the runtime wrote (curated Parquet, shards, index) is in the bucket, under the prefix
    keys = [o.key for o in ws.lake.list()]
    assert any(k.startswith("curated/") for k in keys) and any("/shard-" in k for k in keys)


def test_sqs_notifications_bring_new_and_removed_objects(
    s3: S3, bucket: str, tmp_path: Path
) -> None:
    sqs = s3.client("sqs")
    queue = sqs.create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    s3.client().put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["QueueArn"],
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
        },
    )
    env = _environ(
        s3,
        bucket,
        EMBEDLAKE_LAKE__EVENTS="sqs",
        EMBEDLAKE_LAKE__QUEUE_URL=queue,
        EMBEDLAKE_LAKE__SCAN_SECONDS="3600",  # the safety-net scan cannot run during this test
    )
    key = "raw/fruit/my pies+more.jsonl"  # notifications URL-encode keys ("+" for a space)
    with Workspace.init(tmp_path / "ws", environ=env) as ws, Runtime(ws) as runtime:
        client = s3.client()
        client.put_object(Bucket=bucket, Key=f"lake/{key}", Body=FRUIT)
        client.put_object(Bucket=bucket, Key=f"other/{key}", Body=b"{}")  # outside the lake
        _until("SQS brought the object", lambda: key in ws.catalog.events.seen("raw/"), 15)
        assert runtime.wait_idle(60)
        assert ws.catalog.documents.count() == 6
        # written through embedlake too: the writer and the notification raise one event
        mine = ws.lake.put("raw/fruit/one.jsonl", b'{"_id": "o1", "text": "orange tart"}\n')
        client.delete_object(Bucket=bucket, Key=f"lake/{key}")
        _until("SQS brought the removal", lambda: bool(_events(ws, OBJECT_REMOVED, key)), 15)
        assert runtime.wait_idle(60)
        _until("the queue is drained", lambda: _queue_empty(sqs, queue), 15)
    assert len(_events(ws, OBJECT_CREATED, key)) == 1
    assert len(_events(ws, OBJECT_REMOVED, key)) == 1
    # everything the runtime wrote meanwhile (models, curated Parquet, shards) was noticed by its
    # writer and, for raw/ and models/, by SQS as well: still one event per object
    created = [e.key for _, e in ws.catalog.events.after(0, 10_000) if e.type == OBJECT_CREATED]
    assert len(created) == len(set(created))
    assert _events(ws, OBJECT_CREATED, "raw/fruit/one.jsonl") == [
        created_event_id("raw/fruit/one.jsonl", mine.etag)
    ]
    assert set(ws.catalog.events.seen("")) >= {"raw/fruit/one.jsonl"}
    assert not any(k.startswith("other") for k in ws.catalog.events.seen(""))
    assert ws.catalog.documents.count() == 7


def test_sqs_messages_are_read_as_s3_notifications(ws: Workspace, s3: S3, bucket: str) -> None:
    ws.settings.lake.queue_url = "http://127.0.0.1/123456789012/unused"
    consumer = SqsConsumer(ws, ["raw/"])  # its handling of one message body, without the queue
    s3.client().put_object(Bucket=bucket, Key="lake/raw/s/a b.jsonl", Body=b"{}")
    record = {
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": "lake/raw/s/a+b.jsonl"}},
    }

    def notification(*keys: str, bucket: str = bucket) -> str:
        records = [
            {**record, "s3": {"bucket": {"name": bucket}, "object": {"key": k}}} for k in keys
        ]
        return json.dumps({"Records": records})

    assert consumer.handle(json.dumps({"Event": "s3:TestEvent", "Bucket": bucket})) == 0
    assert consumer.handle("not json") == 0
    assert consumer.handle(notification("lake/raw/s/a+b.jsonl", bucket="another")) == 0
    assert consumer.handle(notification("raw/s/a+b.jsonl", "lake/curated/x.parquet")) == 0
    sns = {"Type": "Notification", "Message": notification("lake/raw/s/a+b.jsonl")}
    assert consumer.handle(json.dumps(sns)) == 1  # S3 → SNS → SQS
    assert consumer.handle(notification("lake/raw/s/a+b.jsonl")) == 0  # seen with this content
    assert list(ws.catalog.events.seen("raw/")) == ["raw/s/a b.jsonl"]
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    # a removal that arrives after the object was written again changes nothing
    assert consumer.handle(json.dumps({"Records": [removed]})) == 0
    s3.client().delete_object(Bucket=bucket, Key="lake/raw/s/a b.jsonl")
    assert consumer.handle(json.dumps({"Records": [removed]})) == 1
    assert consumer.handle(json.dumps({"Records": [removed]})) == 0  # told twice: one event
    assert len(_events(ws, OBJECT_REMOVED, "raw/s/a b.jsonl")) == 1


def test_sqs_events_without_a_queue_stop_the_runtime_before_it_starts(ws: Workspace) -> None:
    ws.settings.lake.events = "sqs"
    with pytest.raises(ConfigError, match=r"needs lake\.queue_url"):
        Runtime(ws).start()


def _queue_empty(sqs: Any, queue: str) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
    return all(found[n] == "0" for n in names)


def test_the_warehouse_queries_parquet_in_the_bucket(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, collection("med"))
    ingest_path(
        ws, write_jsonl(tmp_path / "upd.jsonl", [{"_id": "1", "text": "rewritten"}]), source="med"
    )
    delete_document(ws, "2")
    _, rows = warehouse.query(ws, "select count(*) from documents")
    assert rows == [(ws.catalog.documents.count(),)] == [(1032,)]
    _, rows = warehouse.query(ws, "select text from documents where id = '1'")
    assert rows == [("rewritten",)]
    _, rows = warehouse.query(ws, "select count(*), min(filename) from document_log")
    assert rows[0][0] == 1035 and rows[0][1].startswith(f"s3://{ws.lake.url[5:]}/curated/")
    record = resolve_model(ws, "lsa")
    embed(ws, record, artifacts.load(ws, record))  # the model's files come back from the bucket
    _, rows = warehouse.query(ws, "select count(*), min(len(vector)), min(model) from vectors")
    assert rows == [(1032, 256, f"lsa/{record.version}")]


def test_a_file_in_the_bucket_is_read_by_the_ingest_worker_as_in_process(ws: Workspace) -> None:
    """S3 has no local file: the ingest worker (decision 0033) gets the object's bytes through
    its stdin, and the catalog ends as the in-process path leaves it."""
    body = FRUIT + b'{"_id": "f1", "text": "a repeated id"}\n{"_id": \n'
    ws.lake.put("raw/fruit/pies.jsonl", body)
    ws.lake.put("raw/fruit2/pies.jsonl", body.replace(b'"f', b'"g'))
    ws.settings.ingest.worker = "on"
    through_worker = ingest_object(ws, "raw/fruit/pies.jsonl")
    ws.settings.ingest.worker = "off"
    in_process = ingest_object(ws, "raw/fruit2/pies.jsonl")
    assert (
        through_worker.counts()
        == in_process.counts()
        == {"read": 8, "inserted": 6, "updated": 0, "unchanged": 0, "rejected": 2}
    )
    assert [(r.line, r.reason) for r in through_worker.reasons] == [
        (r.line, r.reason.replace("'g1'", "'f1'")) for r in in_process.reasons
    ]
    texts = {d.id: d.text for d in ws.catalog.documents.iter_live()}
    assert {k: v for k, v in texts.items() if k.startswith("f")} == {
        k.replace("g", "f", 1): v for k, v in texts.items() if k.startswith("g")
    }
