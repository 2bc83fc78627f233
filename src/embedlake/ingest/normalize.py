"""Normalisation and validation of one raw record into a catalog Document."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Generator, Iterable
from typing import Any

from embedlake.catalog.documents import Document
from embedlake.errors import InputError
from embedlake.ingest.encoding import strip_bom
from embedlake.ingest.readers import Reject, Row

ID_FIELDS = ("_id", "id", "doc_id")
TEXT_FIELDS = ("text", "body", "content")
TITLE_FIELDS = ("title",)
MAX_ID_CHARS = 512

_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0, DEL and C1
_SCALARS = (str, int, float, bool, type(None))
# built once: json.dumps with options builds an encoder per call (a third of a small dump's cost)
_METADATA = json.JSONEncoder(allow_nan=False, default=str, ensure_ascii=False)


def is_clean(value: str) -> bool:
    """Whether :func:`clean_text` would return ``value`` as it is, told without building anything:
    ASCII (so NFC already), nothing unprintable but line breaks, single spaces, no space at a
    line's ends, at most one blank line, nothing to strip. Most texts are, and this costs a
    fraction of cleaning them (bench/ingest.py)."""
    if not value.isascii() or "  " in value or value[:1].isspace() or value[-1:].isspace():
        return False
    if value.isprintable():  # one line
        return True
    return (
        value.replace("\n", "").isprintable()
        and " \n" not in value
        and "\n " not in value
        and "\n\n\n" not in value
    )


def clean_text(value: str) -> str:
    """Unicode NFC, no control characters, runs of spaces collapsed, at most one blank line."""
    return value if is_clean(value) else _clean(value)


def _clean(value: str) -> str:
    value = unicodedata.normalize("NFC", strip_bom(value))
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub(" ", value)
    # str.split() per line is ~2.5x faster than a regex over the whole text (bench/ingest.py)
    value = "\n".join(" ".join(line.split()) for line in value.split("\n"))
    return _BLANK_LINES.sub("\n\n", value).strip()


# a record as validation leaves it: a document with its line, or the reason it was refused
Checked = tuple[int, Document] | Reject


def checked(
    records: Iterable[Row | Reject], *, source: str, id_prefix: str, max_bytes: int
) -> Generator[Checked, None, None]:
    """Each record validated and normalised (:func:`to_document`), in file order; an id that
    comes again in the file is refused after its first row (which is kept: deterministic, and
    ingesting the file again gives the same answer). The one code path for both ways of reading a
    file: in the ingesting process, and in a worker process (:mod:`.worker`). Memory grows with
    the ids of the file (their set), not with their texts."""
    first_line: dict[str, int] = {}  # id → the line that brought it first
    for record in records:
        if isinstance(record, Reject):
            yield record
            continue
        try:
            doc = to_document(record.data, source=source, id_prefix=id_prefix, max_bytes=max_bytes)
        except InputError as exc:
            yield Reject(record.line, str(exc), preview(record.data))
            continue
        first = first_line.setdefault(doc.id, record.line)
        if first != record.line:
            reason = f"duplicate document id {doc.id!r} in this file (first at line {first}; "
            yield Reject(record.line, reason + "the first row is kept)", preview(record.data))
            continue
        yield record.line, doc


def preview(data: dict[str, Any]) -> str:
    """What a reject keeps of a record: its JSON, cut at 2,000 characters."""
    return valid_unicode(json.dumps(data, ensure_ascii=False, default=str)[:2000])


def valid_unicode(text: str) -> str:
    """``text`` with a lone surrogate (JSON's "\\ud800", a CSV's undecodable byte) kept as its
    escape: it has no UTF-8, and the quarantine and the worker's batches write UTF-8."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _pick(data: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in data:
            return name, data[name]
    return None, None


def to_document(data: dict[str, Any], *, source: str, id_prefix: str, max_bytes: int) -> Document:
    """Validate and normalise; raises InputError with the reason when the record is unusable."""
    id_field, raw_id = _pick(data, ID_FIELDS)
    if id_field is not None and raw_id is None:
        raise InputError(f"document id ({id_field}) is null")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise InputError(f"missing document id (one of: {', '.join(ID_FIELDS)})")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise InputError(f"document id must be a string or an integer, got {type(raw_id).__name__}")
    raw = str(raw_id).strip()
    if not raw.isascii():  # ASCII is NFC and holds no byte-order mark
        raw = unicodedata.normalize("NFC", strip_bom(raw).strip()).strip()
    doc_id = id_prefix + raw
    if len(doc_id) > MAX_ID_CHARS:
        raise InputError(f"document id is longer than {MAX_ID_CHARS} characters")
    if not doc_id.isprintable() and (
        _CONTROL.search(doc_id) or "\n" in doc_id or "\r" in doc_id or "\t" in doc_id
    ):
        raise InputError("document id contains control characters")
    text_field, raw_text = _pick(data, TEXT_FIELDS)
    title_field, raw_title = _pick(data, TITLE_FIELDS)
    if raw_title is not None and not isinstance(raw_title, str):
        raise InputError(f"title must be a string, got {type(raw_title).__name__}")
    if raw_text is None and text_field is None and raw_title:
        raw_text = ""  # a title alone is a document (the check below wants one of them)
    if not isinstance(raw_text, str):
        raise InputError(
            f"missing text (one of: {', '.join(TEXT_FIELDS)})"
            if raw_text is None
            else f"text must be a string, got {type(raw_text).__name__}"
        )
    _utf8_size(doc_id)
    size = _utf8_size(raw_text) + _utf8_size(raw_title or "")
    if size > max_bytes:
        raise InputError(
            f"document is {size:,} bytes, over the limit of {max_bytes:,} "
            f"(ingest.max_document_bytes)"
        )
    text, title = clean_text(raw_text), clean_text(raw_title or "")
    if not text and not title:
        # a title alone is a document (an encoder embeds title and text together)
        raise InputError("title and text are both empty after normalisation")
    used = {id_field, text_field, title_field}
    metadata = {k: v for k, v in data.items() if k not in used}
    nested = metadata.get("metadata")
    if isinstance(nested, dict):  # BEIR's and the API's {"metadata": {...}}: one flat mapping
        del metadata["metadata"]
        metadata = {**nested, **metadata}
    flat = all(type(v) in _SCALARS for v in metadata.values())  # keys are strings in JSON
    try:
        encoded = _METADATA.encode(metadata)
        _utf8_size(encoded)
        if not flat or not all(type(k) is str for k in metadata):
            metadata = json.loads(encoded)  # stored as it will read back: str() of a value, ...
            flat = False
    except (ValueError, RecursionError) as exc:
        raise InputError(f"metadata is not JSON-serialisable: {exc}") from None
    doc = Document(id=doc_id, source=source, title=title, text=text, metadata=metadata)
    if flat:  # strings, numbers, booleans and nulls read back as they are: the dump is the JSON
        doc.__dict__["metadata_json"] = encoded  # (what the cached property would compute)
    return doc


def _utf8_size(value: str) -> int:
    """The UTF-8 size of ``value``; a lone surrogate (JSON's "\\ud800") has none: refused here,
    before the catalog or the Parquet log would fail on it with the whole batch."""
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError(
            "text, title, id or metadata holds a lone UTF-16 surrogate (not valid Unicode)"
        ) from None
