"""Ingest: every reader, normalisation, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedlake import Workspace
from embedlake.errors import InputError
from embedlake.ingest import delete_document, ingest_path
from embedlake.ingest.normalize import clean_text
from tests.conftest import collection, write_jsonl


def _snapshot(ws: Workspace) -> dict[str, tuple[str, str]]:
    return {d.id: (d.title, d.text) for d in ws.catalog.documents.iter_live()}


def test_jsonl_lands_in_catalog_raw_and_curated(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"_id": "a", "title": "Alpha", "text": "first text", "labels": ["x"]},
            {"id": 2, "text": "second text"},
            {"_id": "b", "text": "third", "metadata": {"lang": "en"}, "year": 2020},
        ],
    )
    [report] = ingest_path(ws, f, source="src")
    assert (report.read, report.inserted, report.rejected) == (3, 3, 0)
    assert ws.catalog.documents.get("a").metadata == {"labels": ["x"]}
    # a nested "metadata" object (BEIR's, the API's) is flattened into one mapping
    assert ws.catalog.documents.get("b").metadata == {"lang": "en", "year": 2020}
    assert ws.catalog.documents.get("2").title == ""
    assert ws.lake.get("raw/src/docs.jsonl") == f.read_bytes()  # untouched copy
    curated = [o.key for o in ws.lake.list("curated/documents/source=src")]
    assert len(curated) == 1


def test_csv_parquet_and_text_folders(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    (folder / "notes").mkdir(parents=True)
    (folder / "table.csv").write_text(
        "id,title,text,label\nc1,CSV one,csv body,red\n"
        'c2,CSV two,"quoted, with comma\nand newline",blue\n',
        encoding="utf-8",
    )
    pq.write_table(
        pa.table(
            {"doc_id": ["p1", "p2"], "body": ["parquet one", "parquet two"], "year": [2020, 2021]}
        ),
        folder / "table.parquet",
    )
    (folder / "notes" / "idea.md").write_text("# A heading\n\nMarkdown body.\n", encoding="utf-8")
    (folder / "notes" / "plain.txt").write_text("Plain first line\nmore", encoding="utf-8")
    (folder / ".hidden.jsonl").write_text("{}", encoding="utf-8")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    reports = ingest_path(ws, folder)
    assert sum(r.inserted for r in reports) == 6
    assert sum(r.rejected for r in reports) == 0
    docs = ws.catalog.documents
    assert docs.get("c2").text == "quoted, with comma\nand newline"
    assert docs.get("c1").metadata == {"label": "red"}
    assert docs.get("p2").metadata == {"year": 2021}
    assert docs.get("notes/idea").title == "A heading"
    assert docs.get("notes/plain").title == "Plain first line"


def test_beir_folder_registers_its_dataset(ws: Workspace) -> None:
    [report] = ingest_path(ws, collection("med"))
    assert report.inserted == 1033
    [dataset] = ws.catalog.benchmarks.list_datasets()
    assert (dataset.name, dataset.n_queries) == ("med", 30)
    assert ws.lake.exists("benchmarks/med/qrels.tsv")


def test_a_title_alone_is_a_document(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"_id": "1", "title": "Only a title", "text": " "},
            {"_id": "2", "title": " ", "text": "\n"},
        ],
    )
    [report] = ingest_path(ws, f)
    assert (report.inserted, report.rejected) == (1, 1)
    assert ws.catalog.documents.get("1").full_text == "Only a title"
    assert "title and text are both empty" in str(report.reasons[0])


def test_normalisation() -> None:
    assert clean_text("Cafe\u0301  au\t lait\r\n\n\n\nnext\x07") == "Caf\u00e9 au lait\n\nnext"


def test_metadata_is_stored_as_it_reads_back() -> None:
    """The catalog and the curated log store ``metadata_json``: for flat metadata it is the
    dump made while validating, otherwise the dump of what reads back."""
    from datetime import date

    from embedlake.ingest.normalize import to_document

    cases: list[dict[Any, Any]] = [
        {"year": 1990, "score": 0.5, "ok": True, "none": None, "name": "é ✓"},
        {"nested": {"a": [1, 2.5]}, "n": 1},
        {"when": date(2026, 12, 6)},  # not JSON: stored as its str()
        {1: "int key", "1": "string key"},  # two keys that are one in JSON
        {"metadata": {"inner": 1}, "outer": 2},  # BEIR's nested mapping, flattened
        {},
    ]
    for case in cases:
        doc = to_document({"_id": "x", "text": "t", **case}, source="s", id_prefix="", max_bytes=99)
        assert json.loads(doc.metadata_json) == doc.metadata
        assert doc.metadata_json == json.dumps(doc.metadata, ensure_ascii=False)
    with pytest.raises(InputError, match="metadata is not JSON-serialisable"):
        to_document(
            {"_id": "x", "text": "t", "v": float("nan")}, source="s", id_prefix="", max_bytes=99
        )


def test_bad_rows_are_quarantined_and_good_rows_land(ws: Workspace, tmp_path: Path) -> None:
    ws.settings.ingest.max_document_bytes = 1000
    f = tmp_path / "bad.jsonl"
    f.write_bytes(
        b"\n".join(
            [
                json.dumps({"_id": "good1", "text": "fine"}).encode(),
                b'{"_id": "broken", "text": ',  # malformed JSON
                json.dumps({"_id": "enc"}).encode()[:-1] + b', "text": "caf\xe9"}',  # latin-1 byte
                json.dumps({"title": "no id", "text": "x"}).encode(),  # missing id
                json.dumps({"_id": "notext", "year": 1}).encode(),  # neither text nor title
                json.dumps({"_id": "big", "text": "x" * 2000}).encode(),  # oversized
                b"[1, 2]",  # not an object
                json.dumps({"_id": "good2", "text": "also fine"}).encode(),
                b'{"_id": "bigint", "text": "x", "n": ' + b"7" * 5_000 + b"}",  # over int's limit
            ]
        )
        + b"\n"
    )
    [report] = ingest_path(ws, f, source="s")
    assert (report.read, report.inserted, report.rejected) == (9, 2, 7)
    reasons = {r.line: r.reason for r in report.reasons}
    assert "malformed JSON" in reasons[2]
    assert "not valid UTF-8" in reasons[3]
    assert "missing document id" in reasons[4]
    assert "missing text" in reasons[5]
    assert "over the limit" in reasons[6]
    assert "expected a JSON object" in reasons[7]
    assert "malformed JSON" in reasons[9] and "4300" in reasons[9]
    assert all(str(r).startswith(f"{f}:") for r in report.reasons)  # file and line named
    assert set(_snapshot(ws)) == {"good1", "good2"}
    reason = json.loads(ws.lake.get("quarantine/s/bad.jsonl.reason.json"))
    assert reason["rejected"] == 7 and reason["raw_key"] == "raw/s/bad.jsonl"
    rejects = ws.lake.get("quarantine/s/bad.jsonl.rejects.jsonl").decode().splitlines()
    assert [json.loads(r)["line"] for r in rejects] == [2, 3, 4, 5, 6, 7, 9]


def test_bad_csv_rows(ws: Workspace, tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_bytes(b"id,text\nok,fine\nbad,caf\xe9\nextra,a,b\n,no id\n")
    [report] = ingest_path(ws, f)
    assert report.inserted == 1
    reasons = sorted(r.reason for r in report.reasons)
    assert any("not valid UTF-8" in r for r in reasons)
    assert any("3 fields, header has 2" in r for r in reasons)
    assert any("missing document id" in r for r in reasons)


def test_unreadable_files_are_rejected_whole(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "corrupt.parquet").write_bytes(b"this is not parquet")
    [report] = ingest_path(ws, tmp_path / "corrupt.parquet")
    assert report.inserted == 0 and report.rejected == 1
    assert "unreadable Parquet file" in str(report.reasons[0])
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 au lait")
    [report] = ingest_path(ws, tmp_path / "latin.txt")
    assert report.rejected == 1 and "not valid UTF-8" in str(report.reasons[0])
    assert ws.catalog.documents.count() == 0


def test_a_bad_file_changes_nothing_already_stored(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, write_jsonl(tmp_path / "a.jsonl", [{"_id": "1", "text": "kept"}]), source="a")
    before = _snapshot(ws)
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b'{"_id": "1", "text": \n\xff\xfe\n{"_id": "1"}\n')
    [report] = ingest_path(ws, bad, source="a")
    assert report.inserted == report.updated == 0 and report.rejected == 3
    assert _snapshot(ws) == before


def test_reingesting_the_same_file_changes_nothing(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"_id": str(i), "text": f"t{i}"} for i in range(10)])
    ingest_path(ws, f)
    objects = [o.key for o in ws.lake.list()]
    events = len(ws.catalog.events.all())
    [again] = ingest_path(ws, f)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10)
    assert [o.key for o in ws.lake.list()] == objects
    assert len(ws.catalog.events.all()) == events


def test_changed_text_updates_and_keeps_the_old_raw_file(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"_id": "1", "text": "old"}, {"_id": "2", "text": "b"}])
    ingest_path(ws, f)
    old_hash = ws.catalog.documents.get("1").content_hash
    write_jsonl(f, [{"_id": "1", "text": "new"}, {"_id": "2", "text": "b"}])
    [report] = ingest_path(ws, f)
    assert (report.updated, report.unchanged) == (1, 1)
    assert ws.catalog.documents.get("1").content_hash != old_hash
    raws = [o.key for o in ws.lake.list("raw/d") if not o.key.endswith(".ingest.json")]
    assert len(raws) == 2 and "raw/d/d.jsonl" in raws  # raw/ is never overwritten
    ingest_path(ws, f)  # that version again: no third copy
    assert len([o for o in ws.lake.list("raw/d") if not o.key.endswith(".ingest.json")]) == 2


def test_ids_of_another_source_are_rejected_unless_prefixed(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, write_jsonl(tmp_path / "a.jsonl", [{"_id": "1", "text": "from a"}]))
    [report] = ingest_path(ws, write_jsonl(tmp_path / "b.jsonl", [{"_id": "1", "text": "from b"}]))
    assert report.rejected == 1 and "already belongs to source 'a'" in str(report.reasons[0])
    assert ws.catalog.documents.get("1").text == "from a"
    ingest_path(ws, tmp_path / "b.jsonl", id_prefix="b:")
    assert ws.catalog.documents.get("b:1").text == "from b"


def test_user_errors_name_the_problem(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ingest_path(ws, tmp_path / "missing.jsonl")
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'"):
        ingest_path(ws, tmp_path / "x.xlsx")
    with pytest.raises(InputError, match="invalid source name"):
        ingest_path(ws, tmp_path / "x.xlsx", source="../etc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no ingestible files"):
        ingest_path(ws, tmp_path / "empty")


def test_delete_is_recorded_in_catalog_and_curated_log(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(
        ws,
        write_jsonl(tmp_path / "d.jsonl", [{"_id": "1", "text": "a"}, {"_id": "2", "text": "b"}]),
    )
    delete_document(ws, "1")
    assert ws.catalog.documents.count() == 1
    assert len(list(ws.lake.list("curated/documents"))) == 2


# -- hostile files (issue 19, finding 9) ---------------------------------------------------------
def test_a_deeply_nested_row_is_quarantined_and_the_rest_of_the_file_lands(
    ws: Workspace, tmp_path: Path
) -> None:
    deep = '{"_id": "deep", "text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    f = tmp_path / "nest.jsonl"
    f.write_text(
        '{"_id": "a", "text": "before"}\n'
        + deep
        + '\n{"_id": "ok", "text": "nested a little", "m": {"a": [[1]]}}\n'
        + '{"_id": "b", "text": "after"}\n',
        encoding="utf-8",
    )
    [report] = ingest_path(ws, f, source="s")
    assert (report.read, report.inserted, report.rejected) == (4, 3, 1)
    [reason] = report.reasons
    assert reason.line == 2 and "ingest.max_json_depth" in reason.reason
    assert set(_snapshot(ws)) == {"a", "ok", "b"}


def test_byte_order_marks_are_stripped_in_every_reader(ws: Workspace, tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "b.jsonl").write_bytes(bom + b'{"_id": "j1", "text": "json"}\n')
    (tmp_path / "b.csv").write_bytes(bom + b"id,text\nc1,csv\n")
    (tmp_path / "b.md").write_bytes(bom + b"# Title\n\nmarkdown")
    reports = ingest_path(ws, tmp_path, source="boms")
    assert sum(r.rejected for r in reports) == 0 and sum(r.inserted for r in reports) == 3
    assert ws.catalog.documents.get("j1").text == "json"
    assert ws.catalog.documents.get("b").title == "Title"
    # a BOM inside a value (concatenated exports, Parquet columns) is stripped too
    pq.write_table(
        pa.table({"id": ["\ufeffp1"], "text": ["\ufeffparquet"]}), tmp_path / "p.parquet"
    )
    ingest_path(ws, tmp_path / "p.parquet", source="boms")
    assert ws.catalog.documents.get("p1").text == "parquet"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt"])
@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_utf16_and_utf32_files_are_refused_by_name(
    ws: Workspace, tmp_path: Path, suffix: str, codec: str
) -> None:
    f = tmp_path / f"wide{suffix}"
    f.write_text(
        'id,text\n"1","wide"\n' if suffix == ".csv" else '{"_id": "1", "text": "w"}\n', codec
    )
    [report] = ingest_path(ws, f)
    assert (report.inserted, report.rejected) == (0, 1)
    assert f"{codec.upper()} LE" in report.reasons[0].reason
    assert "convert it to UTF-8" in report.reasons[0].reason


def test_a_repeated_id_in_one_file_keeps_the_first_and_quarantines_the_rest(
    ws: Workspace, tmp_path: Path
) -> None:
    ws.settings.ingest.batch_size = 2  # repeats across batches, too
    rows: list[object] = [
        {"_id": "x", "text": "first x"},
        {"_id": "y", "text": "y"},
        {"_id": "z", "text": "z"},
        {"_id": "x", "text": "second x"},
        {"_id": "x", "text": "first x"},
    ]
    [report] = ingest_path(ws, write_jsonl(tmp_path / "dup.jsonl", rows), source="d")
    assert report.counts() == {
        "read": 5,
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
    }
    assert [(r.line, r.reason) for r in report.reasons] == [
        (4, "duplicate document id 'x' in this file (first at line 1; the first row is kept)"),
        (5, "duplicate document id 'x' in this file (first at line 1; the first row is kept)"),
    ]
    assert ws.catalog.documents.get("x").text == "first x"
    [again] = ingest_path(ws, tmp_path / "dup.jsonl", source="d")
    assert (again.unchanged, again.rejected) == (3, 2)


def test_beir_queries_and_qrels_with_a_bom(ws: Workspace, tmp_path: Path) -> None:
    beir = tmp_path / "bom"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_bytes(b'\xef\xbb\xbf{"_id": "d1", "text": "doc"}\n')
    (beir / "queries.jsonl").write_bytes(b'\xef\xbb\xbf{"_id": "q1", "text": "query"}\n')
    (beir / "qrels" / "test.tsv").write_bytes(
        b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\nq1\td1\t1\n"
    )
    [report] = ingest_path(ws, beir)
    assert (report.inserted, report.rejected) == (1, 0)
    [dataset] = ws.catalog.benchmarks.list_datasets()
    assert dataset.n_queries == 1


def test_links_inside_a_folder_are_skipped_a_named_link_is_read(
    ws: Workspace, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("a secret", encoding="utf-8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "real.txt").write_text("real", encoding="utf-8")
    (folder / "link.txt").symlink_to(outside / "secret.txt")
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    reports = ingest_path(ws, folder)
    assert [r.file for r in reports] == [str(folder / "real.txt")]
    assert set(_snapshot(ws)) == {"real"}
    [named] = ingest_path(ws, folder / "link.txt", source="named")  # the user named it
    assert named.inserted == 1 and ws.catalog.documents.get("link").text == "a secret"


# -- options travel with the raw copy (issue 19, finding 4) --------------------------------------
def test_the_id_prefix_travels_with_the_raw_copy(ws: Workspace, tmp_path: Path) -> None:
    from embedlake.ingest import ingest_object

    f = write_jsonl(tmp_path / "p.jsonl", [{"_id": "1", "text": "one"}, {"_id": "2", "text": "2"}])
    [report] = ingest_path(ws, f, id_prefix="p:")
    again = ingest_object(ws, report.raw_key or "")  # what the runtime's ingest function does
    assert (again.inserted, again.unchanged) == (0, 2)
    assert set(_snapshot(ws)) == {"p:1", "p:2"}
    # the same bytes under another prefix are another raw copy, each with its options
    [other] = ingest_path(ws, f, id_prefix="q:")
    assert other.raw_key != report.raw_key
    assert ingest_object(ws, other.raw_key or "").unchanged == 2
    assert set(_snapshot(ws)) == {"p:1", "p:2", "q:1", "q:2"}


# -- hostile inputs found by an outside review (2026-12-08) ------------------------------------


def test_a_record_with_a_title_and_no_text_field_is_a_document(
    ws: Workspace, tmp_path: Path
) -> None:
    f = write_jsonl(tmp_path / "t.jsonl", [{"_id": "t", "title": "Only a title"}, {"_id": None}])
    [report] = ingest_path(ws, f)
    assert (report.inserted, report.rejected) == (1, 1)
    assert ws.catalog.documents.get("t").full_text == "Only a title"
    assert "document id (_id) is null" in str(report.reasons[0])


def test_c1_control_characters_in_an_id_are_refused(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "c.jsonl", [{"_id": "a\u0085b", "text": "x"}, {"_id": "ok", "text": "y"}]
    )
    [report] = ingest_path(ws, f)
    assert (report.inserted, report.rejected) == (1, 1)
    assert "control characters" in str(report.reasons[0])


@pytest.mark.parametrize("prefix", ["\n", "\t", " x", "x ", "p" * 600])
def test_an_unusable_id_prefix_is_refused_before_anything_is_stored(
    ws: Workspace, tmp_path: Path, prefix: str
) -> None:
    f = write_jsonl(tmp_path / "p.jsonl", [{"_id": "1", "text": "x"}])
    with pytest.raises(InputError, match="invalid id prefix"):
        ingest_path(ws, f, id_prefix=prefix)
    assert not list(ws.lake.list("raw/"))


def test_a_csv_quote_left_open_is_a_reject_at_its_line_with_bounded_memory(
    ws: Workspace, tmp_path: Path
) -> None:
    """An unclosed quote swallowed every later row into one field, with nothing rejected."""
    f = tmp_path / "u.csv"
    f.write_text('id,title,text\nc1,T1,"good"\nc2,T2,"unbalanced quote\nc3,T3,after\n')
    [report] = ingest_path(ws, f)
    assert (report.inserted, report.rejected) == (1, 1)
    [reason] = report.reasons
    assert reason.line == 3 and "the rest of the file was not read" in reason.reason
    ws.settings.ingest.max_record_bytes = 1000  # a field may not outgrow a record
    big = tmp_path / "big.csv"
    big.write_text('id,text\nq0,"never closed\n' + "".join(f"r{n},x\n" for n in range(2000)))
    [report] = ingest_path(ws, big)
    assert report.rejected == 1 and "field larger than field limit (1000)" in str(report.reasons[0])


def test_csv_header_quirks(ws: Workspace, tmp_path: Path) -> None:
    blank = tmp_path / "lead.csv"
    blank.write_text("\n\n\nid,text\ncl1,x\n")  # blank lines before the header are skipped
    assert ingest_path(ws, blank)[0].inserted == 1
    dup = tmp_path / "dup.csv"
    dup.write_text("id,text,id\ncd1,dup header,cd2\n")  # which id? refused, not the last
    [report] = ingest_path(ws, dup)
    assert report.inserted == 0 and "names a column twice: id" in str(report.reasons[0])


def test_a_file_the_lake_cannot_name_is_reported_and_its_folder_goes_on(
    ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "bs"
    folder.mkdir()
    write_jsonl(folder / "0.jsonl", [{"_id": "bs0", "text": "a"}])
    write_jsonl(folder / "a\\b.jsonl", [{"_id": "bs1", "text": "b"}])
    write_jsonl(folder / "z.jsonl", [{"_id": "bs2", "text": "c"}])
    reports = ingest_path(ws, folder)
    assert [r.inserted for r in reports] == [1, 0, 1]
    assert "invalid lake key" in str(reports[1].reasons[0])


def test_a_later_version_of_a_text_file_updates_its_document(ws: Workspace, tmp_path: Path) -> None:
    """The versioned raw copy's name (notes.<time>.md) gave a second document its id."""
    for n, text in enumerate(["Cavitation.", "Cavitation, revised."]):
        (tmp_path / f"v{n}").mkdir()
        (tmp_path / f"v{n}" / "notes.md").write_text(f"# Hydrofoil notes\n\n{text}\n")
        ingest_path(ws, tmp_path / f"v{n}" / "notes.md", source="t")
    [doc] = [d for d in ws.catalog.documents.iter_live() if d.source == "t"]
    assert doc.id == "notes" and "revised" in doc.text


def test_files_of_a_folder_that_share_ids_are_said(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """They replaced each other's texts, in name order, on every ingest of the folder, silently."""
    folder = tmp_path / "same"
    folder.mkdir()
    (folder / "notes.md").write_text("# Markdown\n\nAbout ramjets.\n")
    write_jsonl(folder / "zz.jsonl", [{"_id": "notes", "text": "the jsonl one"}])
    with caplog.at_level("WARNING"):
        ingest_path(ws, folder)
    assert "1 document id(s) an earlier file of the folder has too ('notes'" in caplog.text
    assert ws.catalog.documents.get("notes").text == "the jsonl one"  # the later file, as a drop


def test_a_benchmark_dataset_is_not_moved_to_a_prefixed_copy(ws: Workspace) -> None:
    """Ingesting a BEIR folder again with --id-prefix pointed its judgments at the new copy."""
    folder = collection("med")
    ingest_path(ws, folder)
    before = ws.catalog.documents.count()
    with pytest.raises(InputError, match="under another --source"):
        ingest_path(ws, folder, id_prefix="c2:")
    assert ws.catalog.documents.count() == before  # refused before anything was ingested
    ingest_path(ws, folder, id_prefix="c2:", source="med-c2")
    assert ws.catalog.benchmarks.dataset("med-c2") is not None
