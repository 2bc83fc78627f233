"""Events: what happened, with an id. Every arrow of the pipeline is one of these.

An event has an id, a type (``object.created``, ``documents.changed``, ``schedule``, …), a time, a
subject (the lake key, the source, the function) and data. Object events convert to and from the AWS
S3 notification record shape, so a handler written here runs unchanged behind a real S3 notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus
from uuid import uuid4

OBJECT_CREATED = "object.created"
OBJECT_REMOVED = "object.removed"
DOCUMENTS_CHANGED = "documents.changed"
MODEL_REGISTERED = "model.registered"
MODEL_REJECTED = "model.rejected"
SCHEDULE = "schedule"

_S3_NAMES = {OBJECT_CREATED: "ObjectCreated:Put", OBJECT_REMOVED: "ObjectRemoved:Delete"}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Event:
    type: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid4().hex)
    time: datetime = field(default_factory=_now)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(
            type=raw["type"],
            subject=raw["subject"],
            data=dict(raw.get("data") or {}),
            id=raw["id"],
            time=datetime.fromisoformat(raw["time"]),
        )

    @property
    def key(self) -> str:
        """The lake key of an object event."""
        return self.subject

    def s3_notification(self, bucket: str = "embedlake") -> dict[str, Any]:
        """This object event as an S3 event notification (``Records[0].s3.object.key`` …)."""
        return {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventTime": self.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "eventName": _S3_NAMES.get(self.type, self.type),
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                        "object": {
                            "key": quote(self.subject),
                            "size": self.data.get("size", 0),
                            "eTag": self.data.get("etag", ""),
                            "sequencer": self.id[:16],
                        },
                    },
                    "responseElements": {"x-amz-request-id": self.id},
                }
            ]
        }


def from_s3_notification(payload: dict[str, Any]) -> list[Event]:
    """Object events from an S3 notification (keys arrive URL-encoded, spaces as '+')."""
    events = []
    for record in payload.get("Records", []):
        name = record.get("eventName", "")
        kind = OBJECT_REMOVED if name.startswith("ObjectRemoved") else OBJECT_CREATED
        obj = record["s3"]["object"]
        time = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
        rid = record.get("responseElements", {}).get("x-amz-request-id") or obj.get("sequencer")
        events.append(
            Event(
                type=kind,
                subject=unquote_plus(obj["key"]),
                data={
                    "size": obj.get("size", 0),
                    "etag": obj.get("eTag", ""),
                    "bucket": record["s3"]["bucket"]["name"],
                },
                id=rid or uuid4().hex,
                time=time,
            )
        )
    return events
