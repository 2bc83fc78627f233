"""fp32 rows appended in batches and read as one matrix: what the ``exact`` and ``rabitq``
engines keep their vectors in while an index is built a batch at a time.

``np.vstack`` per batch copies everything added so far, so a build of n rows in batches of b
copies n²/2b rows. Here the memory form doubles its capacity (every row copied about twice), and
the spilled form (``rabitq``, whose fp32 vectors are only re-scored, never scanned) appends them to
an unnamed temporary file that is memory-mapped when read, so a build holds none of them in memory.
A loaded index's memory-mapped, read-only vectors are the starting rows; they are copied into the
buffer or the file only if rows are added to them.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np

_COPY_BLOCK = 65_536  # rows copied at a time from a loaded index's file into a spill file


class Rows:
    def __init__(self, dim: int, spill: bool = False, base: Any = None) -> None:
        self.dim, self.spill = dim, spill
        self._base = base  # a loaded index's rows (read-only, often memory-mapped), or None
        self._n = 0 if base is None else len(base)
        self._buffer: Any = None  # memory form: capacity ≥ n
        self._file: IO[bytes] | None = None  # spilled form
        self._view: Any = None  # the spilled rows mapped, until the next append

    def __len__(self) -> int:
        return self._n

    @property
    def matrix(self) -> Any:
        """The rows, n × dim float32 (a view: valid until the next append)."""
        if self._base is not None:
            return self._base
        if self._file is not None:
            if self._view is None:
                self._view = (
                    np.memmap(self._file, np.float32, "r", shape=(self._n, self.dim))
                    if self._n
                    else np.empty((0, self.dim), np.float32)
                )
            return self._view
        if self._buffer is None:
            return np.empty((0, self.dim), np.float32)
        return self._buffer[: self._n]

    def append(self, vectors: Any) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(vectors):
            return
        if self._base is not None:
            self._adopt_base()
        if self.spill:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115  # lives with the index
                weakref.finalize(self, self._file.close)  # closed (and so deleted) with it
            self._view = None
            self._file.seek(0, 2)
            self._file.write(vectors.tobytes())
            self._file.flush()
        else:
            need = self._n + len(vectors)
            if self._buffer is None or need > len(self._buffer):
                grown = np.empty((max(need, 2 * self._n, 1024), self.dim), np.float32)
                if self._n:
                    grown[: self._n] = self._buffer[: self._n]
                self._buffer = grown
            self._buffer[self._n : need] = vectors
        self._n += len(vectors)

    def save(self, path: Path) -> None:
        """The rows as a ``.npy`` file; spilled ones copied from their file a block at a time
        rather than read through the memory map."""
        if self._file is None:
            np.save(path, np.asarray(self.matrix, dtype=np.float32))
            return
        with path.open("wb") as out:
            header = {"descr": "<f4", "fortran_order": False, "shape": (self._n, self.dim)}
            np.lib.format.write_array_header_1_0(out, header)
            self._file.seek(0)
            shutil.copyfileobj(self._file, out, 1 << 20)

    def _adopt_base(self) -> None:
        """Copy a loaded index's rows into this object's own storage, to append after them."""
        base, self._base, n = self._base, None, self._n
        self._n = 0
        for start in range(0, n, _COPY_BLOCK):
            self.append(np.asarray(base[start : start + _COPY_BLOCK]))
