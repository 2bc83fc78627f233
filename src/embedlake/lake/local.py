"""Lake engine: a local folder (the embedded default).

The folder holds objects, never pointers: a symbolic link inside it (to a file or a folder, planted
by hand or by a tool) is not followed, so nothing outside the lake's root is ever read into it or
written through it. Listings skip such a link with a warning; any other use of a key that is, or
passes through, a link is refused (``InputError``, a permanent failure: retrying cannot help).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from uuid import uuid4

from fsspec.implementations.local import LocalFileSystem

from embedlake.errors import ConfigError, InputError
from embedlake.lake import ObjectInfo
from embedlake.lake.base import FsspecLake, translate_errors

log = logging.getLogger(__name__)


class LocalLake(FsspecLake):
    def __init__(self, url: str) -> None:
        root = url[len("file://") :] if url.startswith("file://") else url
        root = str(Path(root).resolve())
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission
            raise ConfigError(f"the lake {root} cannot be a folder: {exc.strerror}") from None
        super().__init__(url, LocalFileSystem(), root)

    def _path(self, key: str) -> str:
        path = super()._path(key)
        # the root is resolved: a path that resolves elsewhere passes through a link (or "..")
        if os.path.realpath(path) != path:
            raise InputError(
                f"lake key {key!r} is, or passes through, a symbolic link: refused "
                f"(the lake does not follow links out of {self._root})"
            )
        return path

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in super().list(prefix):
            if os.path.realpath(f"{self._root}/{info.key}") != f"{self._root}/{info.key}":
                log.warning("lake: skipped %s, a symbolic link (links are not followed)", info.key)
                continue
            yield info

    def _write(self, key: str, fill: Callable[[IO[bytes]], object]) -> None:
        # Write beside the target and rename: readers never see half an object, and a crash leaves
        # only a .tmp- file that listings skip.
        path = self._path(key)
        folder = posixpath.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = posixpath.join(folder, f".tmp-{uuid4().hex}")
        try:
            with open(tmp, "wb") as out:
                fill(out)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_path(self, key: str, path: Path) -> ObjectInfo:
        """Moved into the lake when it lies on the lake's filesystem (renamed: no second copy of
        a large build's file), copied otherwise; read once either way, for its MD5."""
        target = self._path(key)
        folder = posixpath.dirname(target)
        with translate_errors(key):
            os.makedirs(folder, exist_ok=True)
            if path.is_symlink() or os.stat(path).st_dev != os.stat(folder).st_dev:
                return super().put_path(key, path)
            digest, size = hashlib.md5(usedforsecurity=False), 0
            with path.open("rb") as source:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            # the mode a file written here gets (the folder's, less execute), not a temporary
            # file's owner-only one
            os.chmod(path, stat.S_IMODE(os.stat(folder).st_mode) & 0o666)
            os.replace(path, target)
        return self._created(key, size, digest.hexdigest())

    def local_path(self, key: str) -> str | None:
        return self._path(key)
