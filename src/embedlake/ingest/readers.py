"""Readers: a lake object in, raw records out, streamed (memory does not grow with the file).

Each reader yields :class:`Row` for a record it could parse and :class:`Reject` for one it could
not, with the line (or row) number, so that one bad record never stops the good ones. What a reader
refuses before parsing is stated in :class:`Limits` (from ``[ingest]``): a record over
``max_record_bytes`` is skipped without being held, JSON deeper than ``max_json_depth`` is not
parsed, and a file that announces UTF-16 or UTF-32 is refused whole (:mod:`.encoding`).
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

from embedlake.ingest.encoding import skip_bom, strip_bom, too_deep

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one record may cost a reader; the defaults are ``[ingest]``'s."""

    max_record_bytes: int = 10_000_000
    max_json_depth: int = 64


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
Reader = Callable[[IO[bytes], str, Limits], Iterator[Record]]


def _snippet(raw: bytes | str, limit: int = 2000) -> str:
    if isinstance(raw, bytes):
        raw = raw[: limit * 4].decode("utf-8", errors="replace")
    return raw[:limit]


def _lines(stream: IO[bytes], limit: int) -> Iterator[tuple[bytes, bool]]:
    """``(line, whole)`` per line. A line over ``limit`` bytes comes as its head and False; the
    rest of it is read past without being kept."""
    head, over = b"", False  # the start of the current line; whether it passed the limit
    while chunk := stream.read(_CHUNK):
        *ends, rest = chunk.split(b"\n")
        for part in ends:  # each of these ends a line
            line = head if over else head + part
            yield (line[:2000], False) if over or len(line) > limit else (line, True)
            head, over = b"", False
        if not over:
            head += rest
            if len(head) > limit:
                head, over = head[:2000], True
    if over or head:
        yield (head, False) if over else (head, True)


def read_jsonl(stream: IO[bytes], name: str, limits: Limits) -> Iterator[Record]:
    if refused := skip_bom(stream):
        yield Reject(None, refused)
        return
    for number, (raw, whole) in enumerate(_lines(stream, limits.max_record_bytes), start=1):
        if not whole:
            yield Reject(
                number,
                f"line is over {limits.max_record_bytes:,} bytes (ingest.max_record_bytes)",
                _snippet(raw),
            )
            continue
        if not raw.strip():
            continue
        yield _json_record(number, raw, limits.max_json_depth)


def _json_record(number: int, raw: bytes, max_depth: int) -> Record:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(number, f"not valid UTF-8 (byte {exc.start})", _snippet(raw))
    if too_deep(text, max_depth):
        return Reject(
            number,
            f"JSON nested deeper than {max_depth} levels (ingest.max_json_depth)",
            _snippet(raw),
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Reject(number, f"malformed JSON: {exc.msg} (column {exc.colno})", _snippet(raw))
    except ValueError as exc:  # an integer of more than 4,300 digits (Python's str-to-int limit)
        return Reject(number, f"malformed JSON: {exc}", _snippet(raw))
    if not isinstance(data, dict):
        return Reject(number, f"expected a JSON object, got {type(data).__name__}", _snippet(raw))
    return Row(number, data)


def read_csv(stream: IO[bytes], name: str, limits: Limits) -> Iterator[Record]:
    if refused := skip_bom(stream):
        yield Reject(None, refused)
        return
    # a field may not outgrow a record (an unclosed quote would otherwise read on to the end of
    # the file, up to a gigabyte, swallowing every row after it)
    csv.field_size_limit(limits.max_record_bytes)
    # surrogateescape keeps reading past a bad byte; the row that holds it is rejected below.
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    try:
        # strict: a quote in the wrong place, or a quoted field still open at the end of the
        # file, is an error (a reject naming the line it started on), not text taken as is
        yield from _csv_rows(csv.reader(text, strict=True))
    finally:
        text.detach()  # the caller owns (and closes) the underlying stream


def _csv_rows(reader: Any) -> Iterator[Record]:
    header: list[str] = []
    try:
        while not header:  # blank lines before the header are skipped, as between rows
            header = next(reader)
    except StopIteration:
        yield Reject(1, "empty CSV file (no header row)")
        return
    except csv.Error as exc:
        yield Reject(reader.line_num, f"unreadable CSV header: {exc}")
        return
    if any(_has_surrogates(h) for h in header):
        yield Reject(reader.line_num, "CSV header is not valid UTF-8")
        return
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        yield Reject(reader.line_num, f"CSV header names a column twice: {', '.join(twice)}")
        return
    while True:
        starts = reader.line_num + 1  # a quoted field may span lines: the row's first line
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # an open quote that outgrew the limit, or reached the end: the rest of the file is
            # inside that field, with no row boundary to resume at
            last = "field larger than field limit" in str(exc) or "unexpected end" in str(exc)
            rest = "; the rest of the file was not read (an unclosed quote?)" if last else ""
            yield Reject(starts, f"malformed CSV (the row starting at line {starts}): {exc}{rest}")
            if last:
                return
            continue
        if not row:
            continue
        data: dict[str | None, Any] = dict(zip(header, row, strict=False))
        if len(row) > len(header):
            data[None] = row[len(header) :]
        yield _csv_record(starts, len(header), data)


def _csv_record(line: int, columns: int, data: dict[str | None, Any]) -> Record:
    values = [v for v in data.values() if isinstance(v, str)]
    if any(_has_surrogates(v) for v in values):
        raw = ",".join(values).encode("utf-8", errors="surrogateescape")
        return Reject(line, "not valid UTF-8", _snippet(raw))
    if None in data:
        return Reject(line, f"row has {columns + len(data[None])} fields, header has {columns}")
    return Row(line, {str(k): v for k, v in data.items() if v not in (None, "")})


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_parquet(stream: IO[bytes], name: str, limits: Limits) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield Reject(None, f"unreadable Parquet file: {exc}")
        return
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=1024):
            for data in batch.to_pylist():
                number += 1
                yield Row(number, {k: v for k, v in data.items() if v is not None})
    except (pa.ArrowException, OSError, ValueError) as exc:  # a damaged row group
        yield Reject(None, f"unreadable Parquet file after row {number}: {exc}")


def read_text(stream: IO[bytes], name: str, limits: Limits) -> Iterator[Record]:
    """A .txt or .md file is one document: id = its path in the source without the extension,
    title = its first heading or line."""
    if refused := skip_bom(stream):
        yield Reject(None, refused)
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, size = [], 0
    try:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > limits.max_record_bytes:
                yield Reject(
                    1, f"file is over {limits.max_record_bytes:,} bytes (ingest.max_record_bytes)"
                )
                return
            parts.append(decoder.decode(chunk))
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:  # where in the file: the chunks before it, give or take
        at = size - len(chunk) + exc.start if chunk else size  # the few bytes a chunk carried
        yield Reject(None, f"not valid UTF-8 (near byte {at:,} of the file)")
        return
    body = strip_bom("".join(parts))
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
