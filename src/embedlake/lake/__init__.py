"""The lake: object storage behind one protocol, engines chosen by URL scheme.

Keys are ``/``-separated, relative, and never contain ``..``: nothing above this package may assume
a POSIX path, so that the S3 engine is a configuration change. Every write and delete emits an
:class:`ObjectEvent` to the subscribers (the catalog's event log, which routes them to functions).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol
from uuid import uuid4

from embedlake.errors import ConfigError

if TYPE_CHECKING:
    from embedlake.config import LakeSettings

EventType = Literal["object.created", "object.removed"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # as the store reports it: MD5 hex for a file or single-part upload, "<md5>-<parts>"
    # for an S3 multipart upload; "" in listings where it would cost a read (a folder)


@dataclass(frozen=True)
class ObjectEvent:
    """A change in the lake; shaped so it maps one-to-one onto an S3 notification record."""

    type: EventType
    key: str
    size: int
    etag: str
    id: str = field(default_factory=lambda: uuid4().hex)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


EventSink = Callable[[ObjectEvent], None]


def created_event_id(key: str, etag: str) -> str:
    """One id for "this content appeared at this key", whoever notices it first."""
    return "obj-" + hashlib.sha256(f"{key}\x00{etag}".encode()).hexdigest()[:40]


class Lake(Protocol):
    """What every lake engine offers."""

    url: str

    def subscribe(self, sink: EventSink) -> None: ...
    def put(self, key: str, data: bytes) -> ObjectInfo: ...
    def put_file(self, key: str, source: IO[bytes]) -> ObjectInfo: ...
    def put_path(self, key: str, path: Path) -> ObjectInfo: ...
    def get(self, key: str) -> bytes: ...
    def open(self, key: str) -> IO[bytes]: ...
    def info(self, key: str) -> ObjectInfo: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str) -> str | None: ...
    def fsspec(self) -> tuple[object, str]: ...


# name → "module:Class"; imported lazily so that an engine's library is only needed when used.
ENGINES: dict[str, str] = {
    "file": "embedlake.lake.local:LocalLake",
    "s3": "embedlake.lake.s3:S3Lake",
}


def open_lake(url: str, settings: LakeSettings | None = None) -> Lake:
    """The lake engine for ``url`` (an absolute path or ``scheme://...``); ``settings`` carry the
    engine's connection options (endpoint, credentials) where it has any."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    target = ENGINES.get(scheme)
    if target is None:
        raise ConfigError(
            f"lake url {url!r}: no engine for scheme {scheme!r} "
            f"(known: {', '.join(sorted(ENGINES))})"
        )
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    lake: Lake = cls(url) if scheme == "file" else cls(url, settings)
    return lake
