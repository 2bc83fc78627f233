"""A large file read and validated in a second process, so that an ingest uses two cores.

Ingesting is two halves of about equal cost: reading, parsing and validating each record (Python,
one record at a time), and writing batches to the catalog and the curated Parquet log. Threads
cannot overlap them (the first half holds the GIL: decision 0029), so for a large line-oriented
file the first half runs in a child process:

    lake object ──pump thread──▶ child's stdin ─▶ reader ─▶ normalize.checked ─▶ Arrow batches
                                                                                    │ stdout
    catalog + curated log ◀── _Run (the ingesting process) ◀── documents and rejects ◀┘

The child runs the very reader and validation the in-process path runs (:func:`.normalize.checked`),
and writes what comes out, in file order, as Arrow IPC record batches; documents carry their
stored metadata JSON and content hash, so nothing is computed twice. The report, the catalog and
the quarantine are the same either way (tested on hostile files).

A failure is never half-silent: if the lake read fails, the child is killed before it could take
the cut for the end of the file, and the read's error is raised; if the child fails, its exit code
and the end of what it printed are raised. Batches already written stay written, as when the
in-process path fails part-way; ingesting the file again finishes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import site
import subprocess
import sys
import tempfile
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from embedlake.catalog.documents import Document
from embedlake.errors import BackendError
from embedlake.ingest.normalize import Checked, checked, valid_unicode
from embedlake.ingest.readers import READERS, Limits, Reject

# formats read front to back (a Parquet file needs random access: read in process)
SEQUENTIAL = (".jsonl", ".ndjson", ".csv")
# below this a file is read in process: the child's start (~0.5 s of imports) would cost more
# than it saves (bench/ingest.py)
WORTH_BYTES = 32 << 20
_BATCH_ROWS = 1_000
_BATCH_CHARS = 8 << 20
_PUMP_CHUNK = 1 << 20
_AHEAD = 8  # batches read ahead of the writes (each ~8 MiB of text at most, and one record)
_MAIN = "import sys; from embedlake.ingest.worker import main; sys.exit(main(sys.argv))"
_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("metadata", pa.string()),  # the stored JSON
        ("content_hash", pa.string()),
        ("reason", pa.string()),  # set for a reject, whose other fields but line and raw are null
        ("raw", pa.string()),
    ]
)


@dataclass(frozen=True)
class Job:
    """What the child needs to read a file as the ingesting process would."""

    suffix: str
    name: str
    source: str
    id_prefix: str
    max_document_bytes: int
    max_record_bytes: int
    max_json_depth: int
    path: str | None = None  # the object's file, when the lake is a local folder (else: stdin)


def checked_in_worker(job: Job, stream: IO[bytes] | None = None) -> Generator[Checked, None, None]:
    """The records of the file as :func:`.normalize.checked` gives them, read and validated in
    a child process while the caller writes the ones before. The child reads ``job.path``, or
    else ``stream``, copied into its stdin by a thread of this process."""
    env = dict(os.environ)
    package_root = Path(__file__).resolve().parents[2]
    if package_root not in {Path(p).resolve() for p in site.getsitepackages()}:
        # a source checkout (editable, or put on sys.path by hand): the child runs this very
        # code; an installed package is found by the same interpreter anyway (and putting
        # site-packages ahead of the standard library could shadow it)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(package_root), env.get("PYTHONPATH")])
        )
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            # -P: the current folder is not put on the child's sys.path (a json.py there would run)
            [sys.executable, "-P", "-c", _MAIN, json.dumps(asdict(job))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        if job.path is None:
            assert stream is not None
            pump: _Pump | None = _Pump(stream, proc)
        else:
            proc.stdin.close()
            pump = None
        receiver = _Receiver(proc.stdout)
        try:
            while (batch := receiver.batches.get()) is not None:
                yield from _items(batch, job.source)
            if receiver.error is not None:  # this process could not read what the child sent
                raise BackendError(
                    f"reading the ingest worker's batches for {job.name} failed: {receiver.error!r}"
                ) from receiver.error
            if pump is not None:
                pump.join()
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the caller stopped early or raised: no orphan child
                proc.kill()
                proc.wait()
            receiver.drain()
            proc.stdout.close()
            if pump is not None:
                pump.join()
        if pump is not None and pump.error is not None:
            raise pump.error
        if code != 0:
            errors.seek(0)
            said = errors.read()[-2000:].decode("utf-8", errors="replace").strip()
            raise BackendError(f"the ingest worker for {job.name} exited with code {code}: {said}")


class _Receiver(threading.Thread):
    """Reads the child's batches ahead into a bounded queue. Without it the child could not run
    ahead: a pipe holds 64 KiB, so the child would wait, its batch half written, until the
    ingesting process had written the batch before (the two took turns instead of overlapping).
    ``None`` ends the queue: the stream's end, or the child's (its exit code tells which)."""

    def __init__(self, stdout: IO[bytes]) -> None:
        super().__init__(name="ingest-receiver", daemon=True)
        self.stdout = stdout
        self.batches: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=_AHEAD)
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for batch in pa.ipc.open_stream(self.stdout):
                self.batches.put(batch)
        except (pa.ArrowInvalid, OSError, ValueError):
            pass  # the child stopped mid-stream (or was stopped): told by its exit code
        except BaseException as exc:  # out of memory, say: raised by the caller, never an end
            self.error = exc
        finally:
            self.batches.put(None)

    def drain(self) -> None:
        """Empty the queue until the thread ends (the child is gone, so it ends soon)."""
        while self.is_alive() or not self.batches.empty():
            with contextlib.suppress(queue.Empty):
                self.batches.get(timeout=0.1)


class _Pump(threading.Thread):
    """Copies the lake object into the child's stdin. The copy releases the GIL (file and pipe
    I/O), so the ingesting process keeps writing meanwhile."""

    def __init__(self, stream: IO[bytes], proc: subprocess.Popen[bytes]) -> None:
        super().__init__(name="ingest-pump", daemon=True)
        self.stream, self.proc = stream, proc
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        sink = self.proc.stdin
        assert sink is not None
        try:
            while chunk := self.stream.read(_PUMP_CHUNK):
                sink.write(chunk)
        except BrokenPipeError:
            pass  # the child is gone: its exit code says why
        except BaseException as exc:  # the lake read failed: the child must not see an end of file
            self.error = exc
            self.proc.kill()
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()


def _items(batch: pa.RecordBatch, source: str) -> Iterator[Checked]:
    columns = batch.to_pydict()
    rows = zip(*(columns[name] for name in _SCHEMA.names), strict=True)
    for line, doc_id, title, text, metadata, content_hash, reason, raw in rows:
        if reason is not None:
            yield Reject(line, reason, raw)
            continue
        doc = Document(doc_id, source, title, text, json.loads(metadata))
        # what the child computed; the cached properties would compute the same
        doc.__dict__["metadata_json"] = metadata
        doc.__dict__["content_hash"] = content_hash
        yield line, doc


def _batches(items: Iterable[Checked]) -> Iterator[pa.RecordBatch]:
    columns: dict[str, list[Any]] = {name: [] for name in _SCHEMA.names}
    chars = 0
    for item in items:
        row: tuple[Any, ...]
        if isinstance(item, Reject):
            raw = None if item.raw is None else valid_unicode(item.raw)
            row = (item.line, None, None, None, None, None, valid_unicode(item.reason), raw)
        else:
            line, doc = item
            row = (
                line,
                doc.id,
                doc.title,
                doc.text,
                doc.metadata_json,
                doc.content_hash,
                None,
                None,
            )
            chars += len(doc.text) + len(doc.title) + len(doc.metadata_json)
        for values, value in zip(columns.values(), row, strict=True):
            values.append(value)
        if len(columns["line"]) >= _BATCH_ROWS or chars >= _BATCH_CHARS:
            yield pa.record_batch(columns, schema=_SCHEMA)
            columns, chars = {name: [] for name in _SCHEMA.names}, 0
    if columns["line"]:
        yield pa.record_batch(columns, schema=_SCHEMA)


class _Rewindable(io.RawIOBase):
    """A pipe whose first bytes can be read again: a reader looks for a byte-order mark and seeks
    back to the start (:func:`.encoding.skip_bom`), which a pipe cannot do by itself."""

    def __init__(self, raw: io.RawIOBase, keep: int = 4) -> None:
        self._raw, self._head, self._pos = raw, b"", 0
        while len(self._head) < keep and (more := raw.read(keep - len(self._head))):
            self._head += more

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos > len(self._head) or self._pos > len(self._head):
            raise io.UnsupportedOperation("a pipe seeks only within its first bytes")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        if self._pos < len(self._head):
            n = min(len(buffer), len(self._head) - self._pos)
            buffer[:n] = self._head[self._pos : self._pos + n]
        else:
            n = self._raw.readinto(buffer)
        self._pos += n
        return n


def main(argv: list[str]) -> int:
    """The child: a :class:`Job` as JSON in ``argv[1]``, the file on stdin, batches on stdout."""
    job = Job(**json.loads(argv[1]))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print of any library lands in stderr, not in the batches
    limits = Limits(job.max_record_bytes, job.max_json_depth)
    if job.path is None:
        stream: IO[bytes] = _Rewindable(io.FileIO(0, "rb", closefd=False))  # type: ignore[assignment]
    else:
        stream = open(job.path, "rb")  # noqa: SIM115 (closed with the process)
    records = READERS[job.suffix](stream, job.name, limits)
    items = checked(
        records, source=job.source, id_prefix=job.id_prefix, max_bytes=job.max_document_bytes
    )
    with out, pa.ipc.new_stream(out, _SCHEMA) as writer:
        for batch in _batches(items):
            writer.write_batch(batch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
