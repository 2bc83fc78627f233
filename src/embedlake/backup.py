"""Backup and restore of a workspace: a snapshot of the catalog and of the lake, anywhere fsspec
writes (a folder, ``s3://backup/...``).

A snapshot is engine-neutral: every catalog table as gzipped JSON lines, so a workspace exported
from SQLite imports into PostgreSQL (the way from the embedded default to production), and the
lake's manifest (key, size, SHA-256 of every object), with the objects themselves unless the lake
is left out (a versioned bucket is its own backup). Vectors that live in the database rather than
the lake (the pgvector index engine) are exported beside the catalog and loaded into new tables.

Layout::

    manifest.json                 format, schema revision, table row counts, lake objects
    catalog/<table>.jsonl.gz      one JSON object per row, in primary-key order
    database-indexes/<id>.npz     ids and vectors of each pgvector index
    lake/<key>                    the objects (without --no-lake)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from sqlalchemy import DateTime, Table, func, select, text, update

from embedlake import index as vector_index
from embedlake.catalog import migrate
from embedlake.catalog.schema import KEPT_BY_TRIGGERS, indexes, metadata
from embedlake.errors import Conflict, InputError, NotFound
from embedlake.lake import Lake, open_lake
from embedlake.search.build import index_params
from embedlake.search.load import load_index
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

FORMAT = "embedlake-snapshot/1"
# the counts kept by triggers are rebuilt by the rows restored, not copied
_TABLES = [t for t in metadata.sorted_tables if t.name not in KEPT_BY_TRIGGERS]
_CHUNK = 1 << 20
_BATCH = 2_000


@dataclass(frozen=True)
class Snapshot:
    location: str
    tables: dict[str, int]  # rows per table
    objects: int
    lake_bytes: int
    lake_copied: bool


def export(ws: Workspace, dest: str, *, lake: bool = True) -> Snapshot:
    """Write a snapshot of ``ws`` to ``dest`` (a folder path or fsspec URL; must be empty)."""
    fs, root = _location(ws, dest)
    if fs.exists(f"{root}/manifest.json"):
        raise Conflict(f"{dest} already holds a snapshot; export into an empty location")
    _check_destination(ws, fs, root, dest)
    fs.makedirs(f"{root}/catalog", exist_ok=True)
    counts: dict[str, int] = {}
    # one read transaction: the tables agree with each other (PostgreSQL gives a consistent
    # snapshot; SQLite in WAL mode too, for the life of the transaction)
    with ws.catalog.connect() as conn:
        for table in _TABLES:
            n = 0
            order = list(table.primary_key.columns)
            with (
                fs.open(f"{root}/catalog/{table.name}.jsonl.gz", "wb") as raw,
                gzip.open(raw, "wt", encoding="utf-8") as out,
            ):
                for row in conn.execute(select(table).order_by(*order)).mappings():
                    out.write(json.dumps(_encode(dict(row)), ensure_ascii=False) + "\n")
                    n += 1
            counts[table.name] = n
    database_indexes = _export_database_indexes(ws, fs, root)
    objects: list[dict[str, Any]] = []
    for info in ws.lake.list():
        digest = hashlib.sha256()
        with ws.lake.open(info.key) as src:
            if lake:
                target = f"{root}/lake/{info.key}"
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                with fs.open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
            else:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
        objects.append({"key": info.key, "size": info.size, "sha256": digest.hexdigest()})
    manifest = {
        "format": FORMAT,
        "schema": migrate.head(),
        "exported_at": datetime.now().astimezone().isoformat(),
        "source": {"catalog": ws.catalog.engine.dialect.name, "lake": ws.lake.url},
        "tables": counts,
        "lake_copied": lake,
        "database_indexes": database_indexes,
        "objects": objects,
    }
    # written last: a snapshot without a manifest is an unfinished one
    with fs.open(f"{root}/manifest.json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    total = sum(o["size"] for o in objects)
    log.info("exported %d rows and %d lake objects to %s", sum(counts.values()), len(objects), dest)
    return Snapshot(dest, counts, len(objects), total, lake)


def import_(ws: Workspace, source: str) -> Snapshot:
    """Restore the snapshot at ``source`` into ``ws``, whose catalog must be empty (a new
    workspace, `embedlake init`). Lake objects are copied and checked against their SHA-256; with
    a snapshot made without the lake, the objects must already be in this workspace's lake."""
    fs, root = _location(ws, source)
    manifest = _manifest(fs, root, source)
    if manifest["schema"] != migrate.head():
        raise InputError(
            f"{source} was exported at catalog schema {manifest['schema']}, this embedlake is at "
            f"{migrate.head()}: import it with the embedlake version that exported it"
        )
    _check_empty(ws)
    if manifest["database_indexes"]:
        index_params(ws, "pgvector")  # refuses a catalog that cannot hold them, before any write
    lake = open_lake(ws.settings.resolve(ws.settings.lake.url), ws.settings.lake)
    if manifest["lake_copied"] and next(iter(lake.list()), None) is not None:
        raise Conflict(
            f"the workspace's lake {lake.url} is not empty: import into a new workspace, so that "
            "nothing stored is overwritten (a lost catalog over its lake: `embedlake recover`)"
        )
    written: list[str] = []
    try:
        etags = _restore_lake(lake, fs, root, manifest, written)
        counts = _restore_catalog(ws, fs, root, etags, manifest["tables"])
    except BaseException:
        for key in written:  # a refused snapshot leaves nothing behind (the catalog rolled back)
            lake.delete(key)
        raise
    for index_id in manifest["database_indexes"]:
        _restore_database_index(ws, fs, root, index_id)
    objects = manifest["objects"]
    return Snapshot(
        source, counts, len(objects), sum(o["size"] for o in objects), manifest["lake_copied"]
    )


def _location(ws: Workspace, url: str) -> tuple[Any, str]:
    """The filesystem and root of a snapshot location; an s3:// one is reached with the lake's
    S3 settings (endpoint, credentials)."""
    if url.startswith("s3://"):
        from embedlake.lake.s3 import filesystem

        return filesystem(ws.settings.lake), url[len("s3://") :].rstrip("/")
    fs, root = fsspec.core.url_to_fs(url)
    return fs, str(root).rstrip("/")


def _check_destination(ws: Workspace, fs: Any, root: str, dest: str) -> None:
    """A snapshot goes to an empty place outside the workspace and its lake: exporting into the
    workspace itself opened each lake object for writing while reading it (every one was left
    empty)."""
    if fs.exists(root) and not fs.isdir(root):
        raise InputError(f"{dest} is a file: export into an empty folder")
    if fs.exists(root) and fs.ls(root):
        raise Conflict(f"{dest} is not empty: export into an empty folder")
    lake = ws.settings.resolve(ws.settings.lake.url)
    local_lake = "://" not in lake or lake.startswith("file://")
    if dest.startswith("s3://"):
        here, there = dest.rstrip("/") + "/", lake.rstrip("/") + "/"
        if not local_lake and (here.startswith(there) or there.startswith(here)):
            raise InputError(f"{dest} overlaps the lake {lake}: export somewhere else")
        return
    target = Path(root).resolve()
    places = [ws.settings.workspace.resolve()]
    if local_lake:
        places.append(Path(lake.removeprefix("file://")).resolve())
    for inside in places:
        if target == inside or inside in target.parents or target in inside.parents:
            raise InputError(
                f"{dest} overlaps the workspace or its lake ({inside}): export somewhere else"
            )


def _manifest(fs: Any, root: str, source: str) -> dict[str, Any]:
    """The snapshot's manifest, checked for the fields an import reads (InputError if not)."""
    if fs.exists(root) and not fs.isdir(root):
        raise InputError(f"{source} is a file, not a snapshot folder")
    try:
        with fs.open(f"{root}/manifest.json", "r", encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"{source} holds no snapshot (no manifest.json)") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{source}/manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{source}: not an embedlake snapshot ({found!r})")
    fields = {
        "schema": str,
        "tables": dict,
        "lake_copied": bool,
        "database_indexes": list,
        "objects": list,
    }
    for name, kind in fields.items():
        if not isinstance(manifest.get(name), kind):
            raise InputError(
                f"{source}/manifest.json: {name!r} is missing or not a {kind.__name__}"
            )
    for obj in manifest["objects"]:
        if not (
            isinstance(obj, dict)
            and isinstance(obj.get("key"), str)
            and isinstance(obj.get("sha256"), str)
            and isinstance(obj.get("size"), int)
        ):
            raise InputError(f"{source}/manifest.json: an object entry is not key, size, sha256")
    return manifest


def _check_empty(ws: Workspace) -> None:
    with ws.catalog.connect() as conn:
        for table in _TABLES:
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise Conflict(
                    f"the workspace's catalog is not empty (table {table.name}): import into a "
                    "new workspace, so that nothing stored is overwritten"
                )


def _restore_lake(
    lake: Lake, fs: Any, root: str, manifest: dict[str, Any], written: list[str]
) -> dict[str, str]:
    """Copy (or check) the objects; returns key → etag in this lake (another store may report
    other etags for the same bytes: a multipart upload's is not an MD5). ``lake`` is one of its
    own, with no subscribers: the restored catalog already records these objects and their
    events, so writing them must not raise new ones. A copied object is checked against its
    SHA-256 before it is written (through a temporary file), so a tampered one never lands;
    ``written`` gets each key written, for the caller to take back if the import fails."""
    etags = {}
    for obj in manifest["objects"]:
        key = obj["key"]
        if manifest["lake_copied"]:
            with fs.open(f"{root}/lake/{key}", "rb") as src, tempfile.TemporaryFile() as held:
                hashing = _Hashing(src)
                while chunk := hashing.read(_CHUNK):
                    held.write(chunk)
                if hashing.sha256.hexdigest() != obj["sha256"]:
                    raise InputError(f"lake object {key}: content differs from the snapshot's")
                held.seek(0)
                written.append(key)
                etags[key] = lake.put_file(key, held).etag
            continue
        else:
            if not lake.exists(key):
                raise NotFound(
                    f"lake object {key} is not in {lake.url}, and the snapshot has no copy"
                )
            etags[key] = lake.info(key).etag
            found = _sha256(lake, key)
        if found != obj["sha256"]:
            raise InputError(f"lake object {key}: content differs from the snapshot's")
    return etags


def _restore_catalog(
    ws: Workspace, fs: Any, root: str, etags: dict[str, str], expected: dict[str, int]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with ws.catalog.begin() as conn:  # all or nothing
        for table in _TABLES:
            rows = 0
            for batch in _read_rows(fs, f"{root}/catalog/{table.name}.jsonl.gz", table):
                if table.name == "lake_objects":  # seen as this lake reports them
                    for row in batch:
                        row["etag"] = etags.get(row["key"], row["etag"])
                conn.execute(table.insert(), batch)
                rows += len(batch)
            counts[table.name] = rows
            if conn.dialect.name == "postgresql":
                advance_sequences(conn, table)
        if counts != expected:  # raised inside the transaction: nothing is committed
            raise InputError(f"the snapshot's row counts {counts} differ from its manifest's")
    return counts


def advance_sequences(conn: Any, table: Table) -> None:
    """Rows came with their ids: move PostgreSQL's serial counters past them."""
    for column in table.primary_key.columns:
        if column.autoincrement is True:
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                )
            )


def _export_database_indexes(ws: Workspace, fs: Any, root: str) -> list[int]:
    """The vectors of indexes that keep them in the database (pgvector), one .npz per index."""
    from embedlake.index.pgvector import PgvectorIndex

    done = []
    with ws.catalog.connect() as conn:
        records = conn.execute(select(indexes.c.id).where(indexes.c.engine == "pgvector")).all()
    for (index_id,) in records:
        index = load_index(ws, ws.catalog.registry.index(index_id))
        assert isinstance(index, PgvectorIndex)
        try:
            ids, vectors = index.rows()
        finally:
            index.close()
        buffer = io.BytesIO()
        np.savez(buffer, ids=np.array(ids, dtype=str), vectors=vectors)
        fs.makedirs(f"{root}/database-indexes", exist_ok=True)
        with fs.open(f"{root}/database-indexes/{index_id}.npz", "wb") as out:
            out.write(buffer.getvalue())
        done.append(index_id)
    return done


def _restore_database_index(ws: Workspace, fs: Any, root: str, index_id: int) -> None:
    """A pgvector index in a new table of this database; its lake manifest and catalog record
    are pointed at the new table."""
    record = ws.catalog.registry.index(index_id)
    with fs.open(f"{root}/database-indexes/{index_id}.npz", "rb") as f:
        saved = np.load(io.BytesIO(f.read()))
    params = {**index_params(ws, "pgvector")}
    params.update(m=record.params["m"], ef_construction=record.params["ef_construction"])
    params["ef_search"] = record.params.get("ef_search", params["ef_search"])  # as it was tuned
    index = vector_index.create("pgvector", int(record.params["dim"]), **params)
    try:
        index.add([str(i) for i in saved["ids"]], saved["vectors"])
        with tempfile.TemporaryDirectory() as tmp:
            index.save(Path(tmp))
            for path in Path(tmp).iterdir():
                ws.lake.put(f"{record.prefix}/{path.name}", path.read_bytes())
        with ws.catalog.begin() as conn:
            conn.execute(
                update(indexes)
                .where(indexes.c.id == index_id)
                .values(params={**record.params, **index.params()})
            )
    finally:
        getattr(index, "close", lambda: None)()


def _read_rows(fs: Any, path: str, table: Table) -> Iterator[list[dict[str, Any]]]:
    dates = {c.name for c in table.columns if isinstance(c.type, DateTime)}
    try:
        raw = fs.open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"the snapshot has no {path}") from None
    try:
        with raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
            batch: list[dict[str, Any]] = []
            for line in lines:
                row = json.loads(line)
                for name in dates:
                    if row.get(name) is not None:
                        row[name] = datetime.fromisoformat(row[name])
                batch.append(row)
                if len(batch) >= _BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch
    except (EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        # a truncated or damaged file (gzip's EOFError, zlib's error is an OSError), a line
        # that is not JSON or not a row: named, not a traceback (nothing is committed)
        raise InputError(f"the snapshot's {path} is damaged: {type(exc).__name__}: {exc}") from None


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _sha256(lake: Lake, key: str) -> str:
    digest = hashlib.sha256()
    with lake.open(key) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (the copy is checked without a second read)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._source.read(size)
        self.sha256.update(chunk)
        return chunk
