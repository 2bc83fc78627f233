"""A file read and validated in a worker process gives what the in-process path gives: the same
documents, rejects, reasons, quarantine and curated log, on hostile files; a failing lake read or
worker is raised, never taken for the end of the file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedlake import Workspace
from embedlake.errors import BackendError
from embedlake.ingest import ingest_path
from embedlake.ingest.normalize import checked
from embedlake.ingest.readers import READERS, Limits, Reject
from embedlake.ingest.worker import Job, checked_in_worker

LIMITS = Limits(max_record_bytes=5_000, max_json_depth=8)
MAX_DOC = 3_000


def _hostile_jsonl() -> bytes:
    good = [
        {"_id": f"g{i}", "title": f"Title {i}", "text": f"text  number {i}\r\nnext", "n": i}
        for i in range(2_500)  # more than one batch each way
    ]
    lines = [json.dumps(d).encode() for d in good]
    lines[10:10] = [
        b'{"_id": "broken", "text": ',  # malformed JSON
        b'{"_id": "enc", "text": "caf\xe9"}',  # not UTF-8
        b'{"_id": "lone", "text": "\\ud800"}',  # a lone surrogate
        b'{"_id": "deep", "text": "t", "m": ' + b"[" * 9 + b"]" * 9 + b"}",
        b'{"_id": "huge", "text": "' + b"y" * 6_000 + b'"}',  # over max_record_bytes
        b'{"_id": "big", "text": "' + b"x" * 3_500 + b'"}',  # over max_document_bytes
        b"",  # blank: skipped
        b"[1, 2]",
        json.dumps({"_id": "g3", "text": "a duplicate id"}).encode(),
        json.dumps({"_id": "nested", "text": "t", "metadata": {"a": [1, {"b": None}]}}).encode(),
        json.dumps({"_id": "ctl\u0001", "text": "control in id"}).encode(),
        json.dumps({"_id": "ünï", "title": "\ufeffBOM title", "text": "e\u0301 nfc"}).encode(),
    ]
    return b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n" + b'{"_id": "cut", "text": "no end'


def _hostile_csv() -> bytes:
    rows = ["id,title,text,lang"]
    rows += [f'c{i},"Title, {i}","body {i}\nsecond line",en' for i in range(2_100)]
    rows += ["c5,dup,again,en", ",no id,x,en", "c-bad,t,caf\udcff,en"]
    return "\r\n".join(rows).encode("utf-8", errors="surrogateescape") + b"\xff\r\n"


def _state(ws: Workspace, source: str, name: str) -> dict[str, Any]:
    docs = {
        d.id: (d.title, d.text, d.metadata, d.metadata_json, d.content_hash)
        for d in ws.catalog.documents.iter_live()
    }
    parts = [i.key for i in ws.lake.list("curated/documents/")]
    curated = sorted(
        tuple(r[c] for c in ("id", "title", "text", "metadata", "content_hash", "op"))
        for key in parts
        for r in pq.read_table(io.BytesIO(ws.lake.get(key))).to_pylist()
    )
    rejects = ws.lake.get(f"quarantine/{source}/{name}.rejects.jsonl").decode().splitlines()
    reason = json.loads(ws.lake.get(f"quarantine/{source}/{name}.reason.json"))
    return {
        "docs": docs,
        "curated": curated,
        "rejects": [json.loads(r) for r in rejects],
        "reasons": reason["reasons"],
    }


@pytest.mark.parametrize(("name", "make"), [("h.jsonl", _hostile_jsonl), ("h.csv", _hostile_csv)])
def test_the_worker_gives_what_the_process_gives(tmp_path: Path, name: str, make: Any) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    seen = {}
    for mode in ("off", "on"):
        with Workspace.init(tmp_path / mode, environ={}) as ws:
            ws.settings.ingest.worker = mode
            ws.settings.ingest.max_document_bytes = MAX_DOC
            ws.settings.ingest.max_record_bytes = LIMITS.max_record_bytes
            ws.settings.ingest.max_json_depth = LIMITS.max_json_depth
            ws.settings.ingest.batch_size = 700
            [report] = ingest_path(ws, path, source="s")
            seen[mode] = (report.counts(), _state(ws, "s", name))
    assert seen["on"] == seen["off"]
    counts, state = seen["on"]
    assert counts["inserted"] > 2_000 and counts["rejected"] >= 3
    assert len(state["rejects"]) == counts["rejected"]


def _job(**changes: Any) -> Job:
    fields = dict(
        suffix=".jsonl",
        name="s.jsonl",
        source="s",
        id_prefix="p:",
        max_document_bytes=MAX_DOC,
        max_record_bytes=LIMITS.max_record_bytes,
        max_json_depth=LIMITS.max_json_depth,
    )
    return Job(**{**fields, **changes})  # type: ignore[arg-type]


def _in_process(data: bytes) -> list[Any]:
    records = READERS[".jsonl"](io.BytesIO(data), "s.jsonl", LIMITS)
    return list(checked(records, source="s", id_prefix="p:", max_bytes=MAX_DOC))


def _comparable(items: list[Any]) -> list[Any]:
    return [
        item if isinstance(item, Reject) else (item[0], item[1], item[1].metadata_json)
        for item in items
    ]


def test_a_stream_is_copied_into_the_worker(tmp_path: Path) -> None:
    """A lake without local files (S3): the object's bytes go through the worker's stdin, whose
    first bytes a reader reads twice (the byte-order mark)."""
    data = _hostile_jsonl()
    through_stdin = list(checked_in_worker(_job(), io.BytesIO(data)))
    assert _comparable(through_stdin) == _comparable(_in_process(data))
    (tmp_path / "f.jsonl").write_bytes(data)
    from_path = list(checked_in_worker(_job(path=str(tmp_path / "f.jsonl"))))
    assert _comparable(from_path) == _comparable(through_stdin)


class _FailingRead(io.RawIOBase):
    """A lake object whose read fails after ``good`` bytes, cut inside a line."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data, self.good, self.pos = data, good, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.good:
            raise OSError("connection reset by the store")
        n = min(len(buffer), self.good - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def test_a_failed_lake_read_is_raised_not_taken_for_the_end() -> None:
    lines = [json.dumps({"_id": f"d{i}", "text": "word " * 40}).encode() for i in range(20_000)]
    data = b"\n".join(lines) + b"\n"
    got: list[Any] = []
    with pytest.raises(OSError, match="connection reset"):
        for item in checked_in_worker(_job(), _FailingRead(data, 3_000_017)):
            got.append(item)
    # what came before the failure is whole lines only: the cut one is not quarantined as
    # malformed, nothing past it is made up
    assert not any(isinstance(i, Reject) for i in got)
    assert [line for line, _ in got] == list(range(1, len(got) + 1))


def test_a_failing_worker_is_raised_with_what_it_said() -> None:
    with pytest.raises(
        BackendError, match=r"(?s)ingest worker for s\.jsonl exited with code 1: .*KeyError"
    ):
        list(checked_in_worker(_job(suffix=".nope"), io.BytesIO(b'{"_id": "a", "text": "b"}\n')))


def _workers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "embedlake.ingest.worker" in " ".join(p.cmdline())
    ]


def test_a_caller_that_stops_early_leaves_no_worker_behind(tmp_path: Path) -> None:
    data = b"".join(
        json.dumps({"_id": f"d{i}", "text": "some words " * 20}).encode() + b"\n"
        for i in range(50_000)
    )
    items: Iterator[Any] = checked_in_worker(_job(), io.BytesIO(data))
    assert next(items)[0] == 1
    assert _workers()
    items.close()  # type: ignore[attr-defined]
    assert not _workers()


def test_a_module_in_the_current_folder_is_not_imported_by_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "json.py").write_text("raise SystemExit('the current folder was imported')\n")
    monkeypatch.chdir(tmp_path)
    data = _hostile_jsonl()
    assert _comparable(list(checked_in_worker(_job(), io.BytesIO(data)))) == _comparable(
        _in_process(data)
    )


def test_a_batch_this_process_cannot_read_is_raised_not_taken_for_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = pa.ipc.open_stream

    def failing(source: Any) -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(real(source)):
            if number == 1:
                raise MemoryError("no room for the second batch")
            yield batch

    monkeypatch.setattr(pa.ipc, "open_stream", failing)
    data = b"".join(
        json.dumps({"_id": f"d{i}", "text": "words"}).encode() + b"\n" for i in range(5_000)
    )
    got: list[Any] = []
    with pytest.raises(BackendError, match="no room for the second batch"):
        for item in checked_in_worker(_job(), io.BytesIO(data)):
            got.append(item)
    assert len(got) == 1_000  # the first batch only
    assert not _workers()


def test_a_failed_write_stops_the_worker_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "many.jsonl"
    path.write_bytes(
        b"".join(
            json.dumps({"_id": f"d{i}", "text": "some words " * 20}).encode() + b"\n"
            for i in range(60_000)
        )
    )
    with Workspace.init(tmp_path / "ws", environ={}) as ws:
        ws.settings.ingest.worker = "on"

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise OSError("the catalog's disk is full")

        monkeypatch.setattr(type(ws.catalog.documents), "upsert", refuse)
        with pytest.raises(OSError, match="disk is full") as raised:
            ingest_path(ws, path, source="s")
        assert raised.value is not None  # the traceback is still held here
        assert not _workers()
