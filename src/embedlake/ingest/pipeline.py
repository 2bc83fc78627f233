"""The ingest pipeline: copy to raw/, read, validate, upsert, write curated Parquet and quarantine.

``ingest_object`` works on an object already in the lake (this is what the ``object.created`` trigger
calls); ``ingest_path`` copies local files into ``raw/`` first and then does the same, with the
options it was given recorded beside the copy (:mod:`.raw`) so that the trigger reads it alike.

An id that comes again later in the same file: the first row is kept and the later ones are
quarantined as duplicates, with their line numbers (deterministic, and re-ingesting the file gives
the same answer). Memory grows with the number of ids in a file (their set), not with their texts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import tempfile
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from embedlake.catalog.documents import Document
from embedlake.errors import InputError, NotFound, RejectedInput
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.ingest import curated
from embedlake.ingest.normalize import MAX_ID_CHARS, Checked, checked
from embedlake.ingest.raw import Options, copy_in, options_of
from embedlake.ingest.readers import READERS, Limits, Reject, reader_for
from embedlake.ingest.worker import SEQUENTIAL, WORTH_BYTES, Job, checked_in_worker
from embedlake.machine import cores
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

_MAX_REASONS = 100  # kept in .reason.json; all rejects are in .rejects.jsonl
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: "$" takes a final "\n"


@dataclass
class IngestReport:
    file: str
    source: str
    raw_key: str | None = None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    reasons: list[RejectedInput] = field(default_factory=list)
    quarantine_key: str | None = None

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k) for k in ("read", "inserted", "updated", "unchanged", "rejected")
        }


def check_source(source: str) -> str:
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise InputError(
            f"invalid source name {source!r}: a letter or digit, then letters, digits, '.', '_' "
            "or '-', at most 128 characters"
        )
    return source


def check_id_prefix(prefix: str) -> str:
    """An ``--id-prefix`` every id may take: no control characters, no space at its ends (ids
    are trimmed: the prefix would not be), room left for an id."""
    if len(prefix) >= MAX_ID_CHARS or prefix != prefix.strip() or not prefix.isprintable():
        raise InputError(
            f"invalid id prefix {prefix[:64]!r}: printable characters with no space at either "
            f"end, under {MAX_ID_CHARS} in all (an id has at most {MAX_ID_CHARS})"
        )
    return prefix


def ingest_path(
    ws: Workspace, path: Path, *, source: str | None = None, id_prefix: str = ""
) -> list[IngestReport]:
    """Ingest a file, a folder of files, or a BEIR folder (corpus.jsonl + queries + qrels)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    source = check_source(source or _default_source(path))
    check_id_prefix(id_prefix)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        from embedlake.ingest.datasets import check_judgments, check_registration, register_beir

        judged = (path / "queries.jsonl").is_file() and (path / "qrels").is_dir()
        if judged:
            check_judgments(path, id_prefix)  # a broken judgment file ingests nothing
            check_registration(ws, source, id_prefix)
        files = [(path / "corpus.jsonl", "corpus.jsonl")]
        reports = [_ingest_file(ws, f, rel, source, id_prefix) for f, rel in files]
        if judged:
            register_beir(ws, path, name=source, id_prefix=id_prefix)
        return reports
    if path.is_dir():
        found = _files_in(path)
        if not found:
            raise InputError(f"{path}: no ingestible files (known: {', '.join(sorted(READERS))})")
        reports, seen = [], FolderIds()
        for f in found:
            try:
                rel = f.relative_to(path).as_posix()
                reports.append(_ingest_file(ws, f, rel, source, id_prefix, seen))
            except InputError as exc:  # a name the lake cannot hold: the folder's others go on
                skipped = IngestReport(file=str(f), source=source, rejected=1)
                skipped.reasons.append(RejectedInput(f"not ingested: {exc}", file=str(f)))
                reports.append(skipped)
        return reports
    if reader_for(path.name) is None:
        raise InputError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r} "
            f"(known: {', '.join(sorted(READERS))})"
        )
    return [_ingest_file(ws, path, path.name, source, id_prefix)]


def announce(ws: Workspace, reports: list[IngestReport]) -> int:
    """Raise ``documents.changed`` for each file whose ingest changed documents, as the runtime's
    ``ingest`` function does after its own; returns how many were raised.

    ``embedlake ingest`` calls this. Its copy into ``raw/`` is an ``object.created`` event, and a
    runtime that reads it ingests the file too: if the command got there first, the runtime finds
    nothing changed and announces nothing, so without this the documents would never be embedded
    (with a runtime up, or started later). Announced twice, they are embedded once: embedding
    takes what the model lacks."""
    raised = 0
    for report in reports:
        changed = report.inserted + report.updated
        if changed:
            data = {"raw_key": report.raw_key, "changed": changed, "by": "embedlake ingest"}
            ws.catalog.events.add(Event(type=DOCUMENTS_CHANGED, subject=report.source, data=data))
            raised += 1
    return raised


def _files_in(folder: Path) -> list[Path]:
    """The ingestible files of ``folder``, hidden ones left out. A symbolic link inside it is
    skipped with a warning: the user named the folder, not what its links point to (a file named
    on the command line is read even when it is a link: the user named it)."""
    found = []
    for top, dirs, files in os.walk(folder):  # does not descend into linked folders
        here = Path(top)
        for name in [d for d in dirs if (here / d).is_symlink()]:
            log.warning("skipped %s: a symbolic link inside %s", here / name, folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in files:
            file = here / name
            if name.startswith(".") or not reader_for(name):
                continue
            if file.is_symlink():
                log.warning("skipped %s: a symbolic link inside %s", file, folder)
            elif file.is_file():
                found.append(file)
    return sorted(found)


def _default_source(path: Path) -> str:
    name = path.resolve().name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "default"


def _ingest_file(
    ws: Workspace,
    path: Path,
    rel: str,
    source: str,
    id_prefix: str,
    seen: FolderIds | None = None,
) -> IngestReport:
    if not rel.isascii():
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # a lake key, an event and a catalog row are UTF-8
            raise InputError(f"{rel!r}: the file name is not valid UTF-8 (rename it)") from None
    try:
        handle = path.open("rb")
    except OSError as exc:
        report = IngestReport(file=str(path), source=source, rejected=1)
        report.reasons.append(RejectedInput(f"unreadable file: {exc.strerror}", file=str(path)))
        return report
    with handle:
        key = copy_in(ws, source, rel, handle, Options(id_prefix=id_prefix))
    return ingest_object(ws, key, id_prefix=id_prefix, display=str(path), seen=seen)


class FolderIds:
    """The ids the files of one folder's ingest brought, each with its file. An id is one
    document of its source: a later file that brings it again updates it, in the folder's name
    order as in the runtime's order of drops. That is said (a warning per file), not silent: two
    files of one source that share ids replace each other's texts on every ingest of the folder.
    Memory grows with the folder's ids, as a file's do in :func:`.normalize.checked`."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def other(self, doc_id: str, file: str) -> str | None:
        """The earlier file that brought ``doc_id``, or None; ``file`` brings it now."""
        first = self.files.get(doc_id)
        self.files[doc_id] = file
        return None if first in (None, file) else first


def ingest_object(
    ws: Workspace,
    key: str,
    *,
    id_prefix: str | None = None,
    display: str | None = None,
    seen: FolderIds | None = None,
) -> IngestReport:
    """Ingest a ``raw/<source>/...`` object of the lake, with the options recorded beside it
    (:func:`.raw.options_of`) unless ``id_prefix`` is given."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "raw":
        raise InputError(f"lake key {key!r} is not under raw/<source>/")
    source, rel = check_source(parts[1]), "/".join(parts[2:])
    shown = display or key
    reader = reader_for(rel)
    if reader is None:
        raise InputError(f"{shown}: unsupported file type (known: {', '.join(sorted(READERS))})")
    if not ws.lake.exists(key):
        raise NotFound(f"lake object {key!r} does not exist")
    options = options_of(ws, key)
    if id_prefix is None:
        id_prefix = options.id_prefix
    name = options.name or rel  # a later version reads as the file it is a version of
    started = datetime.now(UTC)
    report = IngestReport(file=shown, source=source, raw_key=key)
    settings = ws.settings.ingest
    limits = Limits(settings.max_record_bytes, settings.max_json_depth)
    suffix = posixpath.splitext(rel)[1].lower()
    job = Job(suffix, name, source, id_prefix, settings.max_document_bytes, *astuple(limits))
    with tempfile.TemporaryFile() as rejects, ws.lake.open(key) as stream:
        run = _Run(ws, report, rejects, seen)
        path = ws.lake.local_path(key)
        if _in_worker(ws, key, suffix, path):
            items = checked_in_worker(replace(job, path=path), None if path else stream)
        else:
            records = reader(stream, name, limits)
            items = checked(
                records, source=source, id_prefix=id_prefix, max_bytes=job.max_document_bytes
            )
        with contextlib.closing(items):  # a failed write stops a worker at once
            for item in items:
                run.add(item)
        run.flush()
        if run.example is not None:
            log.warning(
                "%s: %d document id(s) an earlier file of the folder has too (%r, in %s): this "
                "file's texts replace those",
                shown,
                run.shared,
                *run.example,
            )
        if report.rejected:
            report.quarantine_key = _quarantine(ws, source, rel, key, report, rejects)
        else:  # a clean read of the object (a file rewritten whole since) clears its quarantine
            for stale in (
                f"quarantine/{source}/{rel}.reason.json",
                f"quarantine/{source}/{rel}.rejects.jsonl",
            ):
                if ws.lake.exists(stale):
                    ws.lake.delete(stale)
    ws.catalog.documents.add_ingest_run(
        source=source, file=shown, raw_key=key, counts=report.counts(), started_at=started
    )
    log.info("ingested %s: %s", shown, report.counts())
    return report


def _in_worker(ws: Workspace, key: str, suffix: str, path: str | None) -> bool:
    """Whether to read the file in a worker process (:mod:`.worker`), by ``[ingest] worker``."""
    mode = ws.settings.ingest.worker
    if mode == "off" or suffix not in SEQUENTIAL:
        return False
    if mode == "on":
        return True
    # a local lake's info() reads the whole object for its etag: its file's size instead
    size = os.path.getsize(path) if path else ws.lake.info(key).size
    return size >= WORTH_BYTES and cores() >= 2


class _Run:
    """One file's checked records on their way in: upserted in batches; rejects counted and
    written to ``rejects``."""

    def __init__(
        self, ws: Workspace, report: IngestReport, rejects: IO[bytes], seen: FolderIds | None
    ) -> None:
        self.ws, self.report, self.rejects, self.seen = ws, report, rejects, seen
        self.settings = ws.settings.ingest
        self.batch: list[tuple[int, Document]] = []
        self.shared = 0  # ids an earlier file of the folder brought too, and one of them
        self.example: tuple[str, str] | None = None

    def add(self, item: Checked) -> None:
        if isinstance(item, Reject):
            self.report.read += item.line is not None
            self.reject(item)
            return
        self.report.read += 1
        if self.seen is not None and (first := self.seen.other(item[1].id, self.report.file)):
            self.shared += 1
            self.example = self.example or (item[1].id, first)
        self.batch.append(item)
        if len(self.batch) >= self.settings.batch_size:
            self.flush()

    def reject(self, record: Reject) -> None:
        _reject(self.report, self.rejects, self.report.file, record)

    def flush(self) -> None:
        if not self.batch:
            return
        ws, report = self.ws, self.report
        lines = {doc.id: line for line, doc in self.batch}
        result = ws.catalog.documents.upsert(
            [doc for _, doc in self.batch],
            before_commit=lambda r: curated.write_part(
                ws.lake, report.source, r.inserted + r.updated
            ),
        )
        for doc, owner in result.conflicts:
            reason = (
                f"document id {doc.id!r} already belongs to source {owner!r} "
                f"(use --id-prefix to keep both)"
            )
            self.reject(Reject(lines[doc.id], reason, None))
        report.inserted += len(result.inserted)
        report.updated += len(result.updated)
        report.unchanged += result.unchanged
        self.batch.clear()


def _reject(report: IngestReport, rejects: IO[bytes], shown: str, record: Reject) -> None:
    report.rejected += 1
    error = RejectedInput(record.reason, file=shown, line=record.line)
    if len(report.reasons) < _MAX_REASONS:
        report.reasons.append(error)
    line = {"line": record.line, "reason": record.reason, "raw": record.raw}
    # a lone surrogate in a reason or a raw text is written as its escape (valid UTF-8)
    rejects.write(json.dumps(line, ensure_ascii=False).encode(errors="backslashreplace") + b"\n")


def _quarantine(
    ws: Workspace, source: str, rel: str, raw_key: str, report: IngestReport, rejects: IO[bytes]
) -> str:
    base = f"quarantine/{source}/{rel}"
    rejects.seek(0)
    ws.lake.put_file(f"{base}.rejects.jsonl", rejects)
    reason = {
        "file": report.file,
        "raw_key": raw_key,
        "rejected": report.rejected,
        "accepted": report.inserted + report.updated + report.unchanged,
        "time": datetime.now(UTC).isoformat(),
        "reasons": [{"line": r.line, "reason": r.reason} for r in report.reasons],
    }
    key = f"{base}.reason.json"
    ws.lake.put(
        key, json.dumps(reason, indent=2, ensure_ascii=False).encode(errors="backslashreplace")
    )
    return key


def delete_document(ws: Workspace, doc_id: str) -> None:
    """Tombstone a document in the catalog and record the deletion in the curated log."""
    doc = ws.catalog.documents.get(doc_id)
    curated.write_part(ws.lake, doc.source, [doc], op="delete")
    ws.catalog.documents.delete(doc_id)
