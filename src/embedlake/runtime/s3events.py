"""Events from a remote lake (S3), where no folder can be watched.

- :class:`ScanPoller` lists the watched prefixes every ``lake.scan_seconds`` (the ``scan`` of
  ``watch.py``, which compares with the catalog's record of objects seen).
- :class:`SqsConsumer` long-polls the SQS queue that the bucket's notifications go to
  (``lake.events = "sqs"``), so that new objects are noticed in about a second without listing the
  bucket; the scan still runs, ten times less often, for notifications lost or never configured.

Whoever notices an object first (the writer, a scan, a notification), its ``object.created`` event
has the same id (:func:`~embedlake.lake.created_event_id`), so the event log holds it once.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from embedlake.errors import ConfigError
from embedlake.events import OBJECT_REMOVED, from_s3_notification
from embedlake.runtime.core import forget_object, record_object
from embedlake.runtime.watch import Loop, scan
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

# Short enough that a runtime stops within a few seconds; an empty receive costs one request.
_WAIT_SECONDS = 2
_SQS_BACKLOG_FACTOR = 10  # with notifications, the scan is only the safety net


def remote_watchers(ws: Workspace, prefixes: list[str]) -> list[Loop]:
    settings = ws.settings.lake
    if settings.events == "sqs":
        return [
            SqsConsumer(ws, prefixes),
            ScanPoller(ws, prefixes, settings.scan_seconds * _SQS_BACKLOG_FACTOR),
        ]
    return [ScanPoller(ws, prefixes, settings.scan_seconds)]


class ScanPoller(Loop):
    def __init__(self, ws: Workspace, prefixes: list[str], every: float) -> None:
        super().__init__("embedlake-scan")
        self._ws = ws
        self._prefixes = prefixes
        self.every = every

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                found = scan(self._ws, self._prefixes)
            except Exception:  # the store or the catalog is away for a while: try again later
                log.exception("scan of %s failed; next in %ss", self._ws.lake.url, self.every)
            else:
                if found:
                    log.info("scan: %d objects changed in %s", found, self._ws.lake.url)


class SqsConsumer(Loop):
    """Reads S3 event notifications (direct, or wrapped by SNS) from ``lake.queue_url``."""

    def __init__(self, ws: Workspace, prefixes: list[str]) -> None:
        super().__init__("embedlake-sqs")
        settings = ws.settings.lake
        if not settings.queue_url:
            raise ConfigError('lake.events = "sqs" needs lake.queue_url (the notification queue)')
        url = ws.lake.url
        if not url.startswith("s3://"):
            raise ConfigError(f'lake.events = "sqs" needs an s3:// lake, not {url!r}')
        self.bucket, _, root = url[len("s3://") :].partition("/")
        self._root = root.strip("/") + "/" if root.strip("/") else ""
        self._ws = ws
        self._prefixes = prefixes
        self._queue = settings.queue_url
        self._sqs = _client(ws)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                reply = self._sqs.receive_message(
                    QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=_WAIT_SECONDS
                )
            except Exception:
                log.exception("cannot read %s; retrying", self._queue)
                self._halt.wait(5)
                continue
            for message in reply.get("Messages", []):
                try:
                    self.handle(message.get("Body", ""))
                except Exception:  # left on the queue: SQS delivers it again after its timeout
                    log.exception("could not handle a notification from %s", self._queue)
                    continue
                self._sqs.delete_message(
                    QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"]
                )

    def handle(self, body: str) -> int:
        """Record the objects one message names; returns how many changed the event log."""
        try:
            payload: Any = json.loads(body)
            if payload.get("Type") == "Notification":  # S3 → SNS → SQS fan-out
                payload = json.loads(payload["Message"])
            events = from_s3_notification(payload)  # no Records (s3:TestEvent): nothing
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a message on %s that is no S3 notification", self._queue)
            return 0
        changed = 0
        for event in events:
            key = self._key(event.data.get("bucket", ""), event.subject)
            if key is None:
                continue
            # Notifications can arrive late and out of order: the store says what is there now.
            if event.type == OBJECT_REMOVED and not self._ws.lake.exists(key):
                changed += forget_object(self._ws, key)
            else:
                changed += record_object(self._ws, key)
        return changed

    def _key(self, bucket: str, name: str) -> str | None:
        """The lake key of bucket object ``name``, or None where it is not ours to watch."""
        if bucket != self.bucket or not name.startswith(self._root):
            return None
        key = name[len(self._root) :]
        return key if any(key.startswith(p) for p in self._prefixes) else None


def _client(ws: Workspace) -> Any:
    import boto3

    settings = ws.settings.lake
    secret = settings.secret_access_key
    # The queue URL names its region (https://sqs.<region>.amazonaws.com/...) when none is set.
    match = re.match(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com/", settings.queue_url)
    return boto3.client(
        "sqs",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region or (match.group(1) if match else None),
        aws_access_key_id=settings.access_key_id or None,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
    )
