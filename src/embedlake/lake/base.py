"""A lake over any fsspec filesystem; engines subclass it and choose the filesystem."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any

from embedlake.errors import InputError, LakeError, NotFound
from embedlake.lake import EventSink, ObjectEvent, ObjectInfo, created_event_id

_CHUNK = 1 << 20


def check_key(key: str) -> str:
    """Reject keys that could escape the lake or mean different things on different engines."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InputError(f"invalid lake key {key!r}: must be a relative '/'-separated path")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InputError(f"invalid lake key {key!r}: empty, '.' or '..' segment")
    return key


@contextmanager
def translate_errors(key: str) -> Iterator[None]:
    """Map filesystem errors to the exception tree at this one boundary."""
    try:
        yield
    except FileNotFoundError:
        raise NotFound(f"lake object {key!r} does not exist") from None
    except (InputError, NotFound):
        raise
    except OSError as exc:
        raise LakeError(f"lake object {key!r}: {exc}") from exc


class FsspecLake:
    """Lake protocol over an fsspec filesystem rooted at ``root`` (no trailing slash)."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        self.url = url
        self._fs = fs
        self._root = root.rstrip("/")
        self._sinks: list[EventSink] = []

    # -- events ---------------------------------------------------------------------------
    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def _emit(self, event: ObjectEvent) -> None:
        for sink in self._sinks:
            sink(event)

    def _translate(self, key: str) -> AbstractContextManager[None]:
        """The error translation of this engine (engines add their library's errors)."""
        return translate_errors(key)

    # -- paths ----------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def _key(self, path: str) -> str:
        path = path.rstrip("/")
        root = self._fs._strip_protocol(self._root).rstrip("/")
        return str(posixpath.relpath(self._fs._strip_protocol(path), root))

    # -- writes ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> ObjectInfo:
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        with self._translate(key):
            stored = self._write(key, lambda out: out.write(data))
        return self._created(key, len(data), stored or etag)

    def put_file(self, key: str, source: IO[bytes]) -> ObjectInfo:
        """Stream ``source`` into ``key`` without holding it in memory."""
        digest = hashlib.md5(usedforsecurity=False)
        size = 0

        def copy(out: IO[bytes]) -> None:
            nonlocal size
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)

        with self._translate(key):
            stored = self._write(key, copy)
        return self._created(key, size, stored or digest.hexdigest())

    def put_path(self, key: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` (a file of the caller's, such as a build's output) under
        ``key``; the file is gone afterwards. An engine may move it instead of copying it (a
        local lake on the same filesystem): a ten-million-vector index is not written twice."""
        with path.open("rb") as source:
            info = self.put_file(key, source)
        path.unlink()
        return info

    def _write(self, key: str, fill: Callable[[IO[bytes]], object]) -> str | None:
        """Write through ``fill``; engines override to make the write atomic, and return the etag
        the store reports where it is not the MD5 of the content (S3 multipart uploads)."""
        path = self._path(key)
        self._fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with self._fs.open(path, "wb") as out:
            fill(out)
        return None

    def _created(self, key: str, size: int, etag: str) -> ObjectInfo:
        info = ObjectInfo(key=key, size=size, etag=etag)
        self._emit(
            ObjectEvent(
                type="object.created", key=key, size=size, etag=etag, id=created_event_id(key, etag)
            )
        )
        return info

    def delete(self, key: str) -> None:
        info = self.info(key)
        with self._translate(key):
            self._fs.rm(self._path(key))
        self._emit(ObjectEvent(type="object.removed", key=key, size=info.size, etag=info.etag))

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        with self._translate(key), self._fs.open(self._path(key), "rb") as f:
            data: bytes = f.read()
            return data

    def open(self, key: str) -> IO[bytes]:
        with self._translate(key):
            handle: IO[bytes] = self._fs.open(self._path(key), "rb")
            return handle

    def info(self, key: str) -> ObjectInfo:
        with self._translate(key):
            raw = self._fs.info(self._path(key))
        if raw.get("type") == "directory":
            raise NotFound(f"lake object {key!r} does not exist (it is a folder)")
        return ObjectInfo(key=key, size=int(raw["size"]), etag=self._etag(key, raw))

    def _etag(self, key: str, raw: dict[str, Any]) -> str:
        etag = raw.get("ETag") or raw.get("etag")
        if etag:
            return str(etag).strip('"')
        digest = hashlib.md5(usedforsecurity=False)
        with self.open(key) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def exists(self, key: str) -> bool:
        with self._translate(key):
            return bool(self._fs.isfile(self._path(key)))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` (a folder-like prefix), sorted by key.

        The etag is the one the engine lists for free (S3); where listing it would mean reading
        every object (a local folder), it is empty: ``info(key)`` computes it.
        """
        base = self._root if not prefix else self._path(prefix.rstrip("/"))
        with self._translate(prefix or "."):
            if not self._fs.exists(base):
                return
            found = self._fs.find(base, detail=True)
        for path in sorted(found):
            raw = found[path]
            if raw.get("type") == "directory":
                continue
            key = self._key(path)
            if posixpath.basename(key).startswith(".tmp-"):
                continue  # an atomic write in progress
            etag = raw.get("ETag") or raw.get("etag") or ""
            yield ObjectInfo(key=key, size=int(raw["size"]), etag=str(etag).strip('"'))

    def local_path(self, key: str) -> str | None:
        return None

    def fsspec(self) -> tuple[Any, str]:
        """The fsspec filesystem and root, for engines (DuckDB, pyarrow) that read it directly."""
        return self._fs, self._root
