"""Every reader under hostile bytes (property-based): encodings, byte-order marks, nesting, control
characters, huge fields and truncated files.

What must hold, whatever the bytes: no traceback (a reader yields rows or rejects; a BEIR parse
raises only ``InputError``); every good row is kept, with its text; every bad row is quarantined
with its reason and line; nothing already stored changes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedlake import Workspace
from embedlake.errors import InputError
from embedlake.ingest import IngestReport, ingest_object
from embedlake.ingest.datasets import parse
from embedlake.ingest.normalize import _clean, clean_text, is_clean
from embedlake.ingest.readers import READERS, Limits, Reject, Row

LIMITS = Limits(max_record_bytes=4_000, max_json_depth=8)
MAX_DOC = 1_000
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BOMS = [b"", b"\xef\xbb\xbf"]
WIDE_BOMS = [b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"]
_names = count()

# text with what real exports carry: control characters, BOMs and marks inside, any script
texts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\x00\x07\r\t\ufeff"),
    max_size=60,
).map(lambda t: t + " word")  # never empty after normalisation
ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=12)
hostile = st.binary(max_size=300) | st.sampled_from(
    [
        b"\xff\xfe\x00",
        b"[" * 10_000 + b"]" * 10_000,  # deeper than any stack
        b'{"_id": "deep", "text": "t", "m": ' + b"[" * 9 + b"]" * 9 + b"}",  # just over the limit
        b'{"_id": ',
        b"[1, 2]",
        b'"a string"',
        b'{"_id": "x\\u0000y", "text": "control in id"}',
        b'{"_id": "lone", "text": "\\ud800"}',
        b'{"_id": "big", "text": "' + b"x" * (MAX_DOC + 1) + b'"}',
        b'{"_id": "huge", "text": "' + b"y" * (LIMITS.max_record_bytes + 1) + b'"}',
        b'{"_id": 1.5, "text": "float id"}',
        b'{"_id": "n", "text": 7}',
        b'{"_id": "m", "text": "nan", "v": NaN}',
    ]
)


def _records(data: bytes, suffix: str) -> list[Row | Reject]:
    """Everything a reader yields for ``data``; only embedlake's own errors may escape."""
    return list(READERS[suffix](io.BytesIO(data), f"fuzz{suffix}", LIMITS))


@pytest.fixture(scope="module")
def lake_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """One workspace for the module, holding documents that no fuzzed file may change."""
    with Workspace.init(tmp_path_factory.mktemp("fuzz") / "ws", environ={}) as ws:
        ws.settings.ingest.max_document_bytes = MAX_DOC
        ws.settings.ingest.max_record_bytes = LIMITS.max_record_bytes
        ws.settings.ingest.max_json_depth = LIMITS.max_json_depth
        ws.lake.put("raw/kept/k.jsonl", b'{"_id": "kept", "text": "stored before"}\n')
        ingest_object(ws, "raw/kept/k.jsonl")
        yield ws


def _stored(ws: Workspace) -> dict[str, str]:
    return {d.id: d.text for d in ws.catalog.documents.iter_live()}


def _source() -> str:
    """A fresh source (and id namespace) per example: examples share one workspace."""
    return f"f{next(_names)}"


def _ingest(ws: Workspace, source: str, data: bytes, suffix: str) -> IngestReport:
    key = f"raw/{source}/{source}{suffix}"  # a text file's document id is its name: the source
    ws.lake.put(key, data)
    return ingest_object(ws, key)


# -- readers alone: no traceback, whatever the bytes ---------------------------------------------
@FAST
@given(
    bom=st.sampled_from(BOMS + WIDE_BOMS),
    body=st.lists(hostile, max_size=6),
    cut=st.integers(0, 50),
    suffix=st.sampled_from(sorted(READERS)),
)
def test_no_reader_raises_on_hostile_bytes(
    bom: bytes, body: list[bytes], cut: int, suffix: str
) -> None:
    data = bom + b"\n".join(body)
    data = data[: max(0, len(data) - cut)]  # truncated anywhere
    for record in _records(data, suffix):
        assert isinstance(record, Row | Reject)
        if isinstance(record, Reject):
            assert record.reason
    if bom in WIDE_BOMS and suffix != ".parquet" and data.startswith(bom):
        [refused] = _records(data, suffix)
        assert isinstance(refused, Reject) and "convert it to UTF-8" in refused.reason


@FAST
@given(
    table=st.lists(st.tuples(ids, texts), min_size=1, max_size=20),
    cut=st.integers(1, 400),
)
def test_a_truncated_parquet_file_is_refused_not_raised(
    table: list[tuple[str, str]], cut: int
) -> None:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": [i for i, _ in table], "text": [t for _, t in table]}), out)
    data = out.getvalue()
    records = _records(data[: len(data) - cut], ".parquet")
    assert all(isinstance(r, Reject) for r in records) and len(records) <= 1


@FAST
@given(queries=st.binary(max_size=200), qrels=st.binary(max_size=200), bom=st.sampled_from(BOMS))
def test_a_beir_parse_raises_only_input_errors(queries: bytes, qrels: bytes, bom: bytes) -> None:
    with contextlib.suppress(InputError):
        parse("fuzz", bom + queries, bom + qrels)


# -- the pipeline: good rows kept, bad rows quarantined, nothing stored changed ------------------
@FAST
@given(
    good=st.dictionaries(ids, texts, min_size=0, max_size=8),
    bad=st.lists(hostile, max_size=5),
    order=st.randoms(use_true_random=False),
    bom=st.sampled_from(BOMS),
    crlf=st.booleans(),
)
def test_jsonl_keeps_every_good_row_and_quarantines_every_bad_one(
    lake_ws: Workspace,
    good: dict[str, str],
    bad: list[bytes],
    order: object,
    bom: bytes,
    crlf: bool,
) -> None:
    before, source = _stored(lake_ws), _source()
    lines = [
        (json.dumps({"_id": f"{source}-{i}", "text": t}).encode(), True) for i, t in good.items()
    ]
    # a hostile line either is one of the rejected kinds, or blank (skipped), or by chance valid:
    # read it alone first to know which
    kinds = []
    for raw in bad:
        if b"\n" in raw or b"\r" in raw:
            raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
        alone = _records(raw, ".jsonl")
        if alone and isinstance(alone[0], Reject) and _is_object_reject(raw):
            kinds.append((raw, False))
    lines += kinds
    order.shuffle(lines)  # type: ignore[attr-defined]
    end = b"\r\n" if crlf else b"\n"
    report = _ingest(lake_ws, source, bom + end.join(raw for raw, _ in lines) + end, ".jsonl")
    stored = _stored(lake_ws)
    for i, text in good.items():
        assert stored[f"{source}-{i}"] == clean_text(text)
    bad_lines = sorted(n for n, (_, ok) in enumerate(lines, start=1) if not ok)
    assert sorted(r.line or 0 for r in report.reasons) == bad_lines
    assert report.inserted == len(good)
    if bad_lines:
        rejects = lake_ws.lake.get(f"quarantine/{source}/{source}.jsonl.rejects.jsonl").splitlines()
        assert [json.loads(r)["line"] for r in rejects] == bad_lines
        assert all(json.loads(r)["reason"] for r in rejects)
    assert {k: stored[k] for k in before} == before


def _is_object_reject(raw: bytes) -> bool:
    """A line that is rejected as a record (not a blank line, which is skipped)."""
    return bool(raw.strip()) and not raw.startswith(
        (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
    )


@FAST
@given(
    good=st.dictionaries(ids, texts, min_size=1, max_size=8),
    bad_utf8=st.integers(0, 3),
    wrong_width=st.integers(0, 3),
    bom=st.sampled_from(BOMS),
)
def test_csv_keeps_every_good_row_and_quarantines_every_bad_one(
    lake_ws: Workspace, good: dict[str, str], bad_utf8: int, wrong_width: int, bom: bytes
) -> None:
    before, source = _stored(lake_ws), _source()
    out = io.StringIO()
    writer = csv.writer(out)  # "\r\n": fields holding either are quoted
    writer.writerow(["id", "text"])
    for i, text in good.items():
        writer.writerow([f"{source}-{i}", text.replace("\x00", " ")])  # csv cannot carry NUL
    data = out.getvalue().encode()
    data += b"".join(b"bad-%d,caf\xe9\n" % n for n in range(bad_utf8))
    data += b"".join(b"wide-%d,a,b\n" % n for n in range(wrong_width))
    report = _ingest(lake_ws, source, bom + data, ".csv")
    stored = _stored(lake_ws)
    for i, text in good.items():
        assert stored[f"{source}-{i}"] == clean_text(text.replace("\x00", " "))
    assert (report.inserted, report.rejected) == (len(good), bad_utf8 + wrong_width)
    assert {k: stored[k] for k in before} == before


@FAST
@given(body=texts, bom=st.sampled_from(BOMS), suffix=st.sampled_from([".txt", ".md"]))
def test_a_text_file_is_one_document_whatever_it_holds(
    lake_ws: Workspace, body: str, bom: bytes, suffix: str
) -> None:
    before, source = _stored(lake_ws), _source()
    report = _ingest(lake_ws, source, bom + body.encode(), suffix)
    assert (report.inserted, report.rejected) == (1, 0)
    stored = _stored(lake_ws)
    assert stored[source] == clean_text(body)
    assert {k: stored[k] for k in before} == before


def test_a_row_claiming_a_stored_id_changes_nothing(lake_ws: Workspace, tmp_path: Path) -> None:
    before = _stored(lake_ws)
    report = _ingest(lake_ws, _source(), b'{"_id": "kept", "text": "hijacked"}\n', ".jsonl")
    assert report.rejected == 1
    assert _stored(lake_ws)["kept"] == before["kept"] == "stored before"


# whitespace of every kind, controls, a BOM, a combining mark: what the shortcut must not let by
_EDGES = st.text(
    st.sampled_from(list("ab. \n\n\t\r\x0b\x0c\x1c\x85\xa0\u2028\u3000\x07\x7f\ufeffe\u0301"))
)


@FAST
@given(_EDGES | texts)
def test_the_shortcut_for_clean_text_returns_what_cleaning_does(value: str) -> None:
    """``clean_text`` skips the work for a text ``is_clean`` passes: only when cleaning it would
    change nothing."""
    cleaned = _clean(value)
    if is_clean(value):
        assert cleaned == value
    assert clean_text(value) == cleaned


def test_the_usual_texts_take_the_shortcut() -> None:
    """The shortcut is taken where it matters: ASCII prose, with paragraphs too."""
    assert is_clean("A plain sentence, with punctuation (and digits: 42).")
    assert is_clean("Two paragraphs.\n\nThe second one.\nA line of it.")
    for dirty in ("two  spaces", " lead", "trail ", "tab\there", "cr\r\n", "three\n\n\nbreaks"):
        assert not is_clean(dirty)
    assert not is_clean("caf\u00e9")  # not ASCII: NFC is checked the long way
