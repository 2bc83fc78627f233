"""Readers: a lake object in, raw records out, streamed (memory does not grow with the file).

Each reader yields :class:`Row` for a record it could parse and :class:`Reject` for one it could
not, with the line (or row) number, so that one bad record never stops the good ones.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

csv.field_size_limit(1 << 30)  # the document size limit is enforced by validation, per row


@dataclass(frozen=True)
class Row:
    line: int
    data: dict[str, Any]


@dataclass(frozen=True)
class Reject:
    line: int | None
    reason: str
    raw: str | None = None


Record = Row | Reject
Reader = Callable[[IO[bytes], str], Iterator[Record]]


def _snippet(raw: bytes | str, limit: int = 2000) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return raw[:limit]


def read_jsonl(stream: IO[bytes], name: str) -> Iterator[Record]:
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Reject(number, f"not valid UTF-8 (byte {exc.start})", _snippet(raw))
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Reject(number, f"malformed JSON: {exc.msg} at column {exc.colno}", _snippet(raw))
            continue
        if not isinstance(data, dict):
            yield Reject(
                number, f"expected a JSON object, got {type(data).__name__}", _snippet(raw)
            )
            continue
        yield Row(number, data)


def read_csv(stream: IO[bytes], name: str) -> Iterator[Record]:
    # surrogateescape keeps reading past a bad byte; the row that holds it is rejected below.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from _csv_rows(csv.DictReader(text))
    finally:
        text.detach()  # the caller owns (and closes) the underlying stream


def _csv_rows(reader: csv.DictReader[str]) -> Iterator[Record]:
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        yield Reject(1, f"unreadable CSV header: {exc}")
        return
    if not header:
        yield Reject(1, "empty CSV file (no header row)")
        return
    while True:
        try:
            data = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Reject(reader.line_num, f"malformed CSV: {exc}")
            continue
        line = reader.line_num
        values = [v for v in data.values() if isinstance(v, str)]
        if any(_has_surrogates(v) for v in values):
            raw = ",".join(values).encode("utf-8", errors="surrogateescape")
            yield Reject(line, "not valid UTF-8", _snippet(raw))
            continue
        if None in data:
            extra = data[None]
            yield Reject(
                line, f"row has {len(header) + len(extra)} fields, header has {len(header)}"
            )
            continue
        yield Row(line, {k: v for k, v in data.items() if v not in (None, "")})


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_parquet(stream: IO[bytes], name: str) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowInvalid, OSError) as exc:
        yield Reject(None, f"unreadable Parquet file: {exc}")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            number += 1
            yield Row(number, {k: v for k, v in data.items() if v is not None})


def read_text(stream: IO[bytes], name: str) -> Iterator[Record]:
    """A .txt or .md file is one document: id = its path in the source without the extension,
    title = its first heading or line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts = []
    try:
        while chunk := stream.read(1 << 20):
            parts.append(decoder.decode(chunk))
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        yield Reject(None, f"not valid UTF-8 (byte {exc.start} of a chunk)")
        return
    body = "".join(parts)
    first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    title = first.lstrip("#").strip() if name.endswith(".md") else first
    yield Row(1, {"id": posixpath.splitext(name)[0], "title": title[:300], "text": body})


READERS: dict[str, Reader] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".txt": read_text,
    ".md": read_text,
}


def reader_for(name: str) -> Reader | None:
    return READERS.get(posixpath.splitext(name)[1].lower())
