"""Lake engine: a local folder (the embedded default)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import IO
from uuid import uuid4

from fsspec.implementations.local import LocalFileSystem

from embedlake.lake.base import FsspecLake


class LocalLake(FsspecLake):
    def __init__(self, url: str) -> None:
        root = url[len("file://") :] if url.startswith("file://") else url
        root = str(Path(root).resolve())
        Path(root).mkdir(parents=True, exist_ok=True)
        super().__init__(url, LocalFileSystem(), root)

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

    def local_path(self, key: str) -> str | None:
        return self._path(key)
