"""AWS payloads as embedlake messages.

A Lambda payload is first split into *units*, what AWS retries on its own: an SQS batch has one unit
per message (its ``messageId`` goes into ``batchItemFailures`` when it fails); any other payload (an
S3 notification sent straight to the function, an EventBridge event, a dispatcher's invoke) is one
unit, retried whole by Lambda when the invocation raises.

Each unit then parses into messages:

- :class:`ObjectNotice`: the store says an object appeared or went (S3 notification records,
  EventBridge "Object Created"/"Object Deleted"). It is not an event yet: the handler asks the lake
  what is there now and records it as the local watcher does, so that every path that notices one
  content (direct, SQS, EventBridge, a scan) ends in one event id.
- :class:`Tick`: an EventBridge scheduled event; the handler makes it its function's schedule event.
- :class:`~embedlake.events.Event`: an embedlake event from the outbox, sent by the dispatcher
  (:func:`invoke_payload`) or carried by an SQS message whose body is ``Event.to_json()``.

Keys in S3 notifications are URL-encoded (a space arrives as ``+``, a ``+`` as ``%2B``); keys of
other buckets or outside the lake's prefix are not ours and are dropped here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from embedlake.errors import ConfigError, InputError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, Event, from_s3_notification

SOURCE = "embedlake"  # the EventBridge-style ``source`` of the dispatcher's invokes
_EVENTBRIDGE_OBJECTS = {"Object Created": OBJECT_CREATED, "Object Deleted": OBJECT_REMOVED}
_EVENT_FIELDS = frozenset({"id", "type", "subject", "time"})


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake lives in S3: a bucket and a key prefix (``""`` or ``"prefix/"``)."""

    bucket: str
    root: str

    @classmethod
    def parse(cls, url: str) -> LakeLocation:
        if not url.startswith("s3://"):
            raise ConfigError(f"on AWS Lambda the lake must be an s3:// URL, not {url!r}")
        bucket, _, root = url[len("s3://") :].partition("/")
        root = root.strip("/")
        return cls(bucket, root + "/" if root else "")

    def key(self, bucket: str, name: str) -> str | None:
        """The lake key of bucket object ``name``, or None where it is not in the lake."""
        if bucket != self.bucket or not name.startswith(self.root):
            return None
        return name[len(self.root) :] or None


@dataclass(frozen=True)
class ObjectNotice:
    type: str  # object.created or object.removed
    key: str  # the lake key, decoded


@dataclass(frozen=True)
class Tick:
    time: datetime
    rule: str  # the EventBridge rule's ARN (for the logs)


Message = ObjectNotice | Tick | Event


def units(payload: Any) -> tuple[bool, list[tuple[str | None, Any]]]:
    """(is an SQS batch, [(SQS message id or None, what to parse)])."""
    records = payload.get("Records") if isinstance(payload, dict) else None
    if (
        isinstance(records, list)
        and records
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        return True, [(str(r["messageId"]), r.get("body", "")) for r in records]
    return False, [(None, payload)]


def messages(payload: Any, lake: LakeLocation) -> list[Message]:
    """The messages of one unit; raises InputError for a shape embedlake does not know."""
    try:
        return _messages(payload, lake)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"not an AWS event embedlake knows: {type(exc).__name__}: {exc}") from None


def _messages(payload: Any, lake: LakeLocation) -> list[Message]:
    if isinstance(payload, str | bytes):
        payload = json.loads(payload)  # an SQS body, an SNS message
    if not isinstance(payload, dict):
        raise ValueError(f"a {type(payload).__name__}, not an object")
    if payload.get("Type") == "Notification" and "Message" in payload:  # S3 → SNS → SQS
        return _messages(payload["Message"], lake)
    if payload.get("Event") == "s3:TestEvent":  # sent once when a notification is configured
        return []
    if isinstance(payload.get("Records"), list):
        found: list[Message] = []
        for record in payload["Records"]:
            if record.get("EventSource") == "aws:sns":  # S3 → SNS → Lambda
                found += _messages(record["Sns"]["Message"], lake)
            elif "s3" in record:
                found += _s3_records({"Records": [record]}, lake)
            else:
                raise ValueError(f"a record from {record.get('eventSource')!r}")
        return found
    source, kind = payload.get("source"), payload.get("detail-type")
    if source == "aws.s3" and kind in _EVENTBRIDGE_OBJECTS:
        detail = payload["detail"]
        # Decoded as the notification keys are: EventBridge's S3 events encode them the same way.
        key = lake.key(detail["bucket"]["name"], unquote_plus(detail["object"]["key"]))
        return [] if key is None else [ObjectNotice(_EVENTBRIDGE_OBJECTS[kind], key)]
    if kind == "Scheduled Event":
        time = datetime.fromisoformat(str(payload["time"]).replace("Z", "+00:00"))
        return [Tick(time.astimezone(UTC), ",".join(payload.get("resources", [])))]
    if source == SOURCE:
        return [Event.from_json(payload["detail"])]
    if payload.keys() >= _EVENT_FIELDS:  # an SQS body holding Event.to_json()
        return [Event.from_json(payload)]
    raise ValueError(f"unknown payload with keys {sorted(payload)[:8]}")


def _s3_records(notification: dict[str, Any], lake: LakeLocation) -> list[Message]:
    found: list[Message] = []
    for event in from_s3_notification(notification):  # decodes the key (unquote_plus)
        key = lake.key(str(event.data.get("bucket", "")), event.subject)
        if key is not None:
            found.append(ObjectNotice(event.type, key))
    return found


def invoke_payload(event: Event) -> dict[str, Any]:
    """What the dispatcher sends a function for ``event``: shaped as an EventBridge event, so the
    same payload works if embedlake events are one day put on an event bus."""
    return {"version": "0", "source": SOURCE, "detail-type": event.type, "detail": event.to_json()}
