"""The raw copies under ``raw/<source>/`` and the options each was ingested with.

``embedlake ingest`` copies a file into ``raw/`` and ingests it at once; the runtime, seeing that
copy's ``object.created``, ingests it again. Both must read it the same way, so the options an ingest
used (today: ``id_prefix``) travel with the copy, in a sidecar ``<raw key>.ingest.json`` written
before it. A copy without a sidecar (a file dropped into the lake, an API batch) has the defaults. A
sidecar is a ``.json`` object, which no reader takes, so the runtime never ingests it as documents;
one dropped beside a file by hand gives that file its options.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import IO

from embedlake.errors import InputError, NotFound
from embedlake.lake import ObjectInfo
from embedlake.workspace import Workspace

SIDECAR = ".ingest.json"
SIDECAR_BYTES = 65_536
NAME_BYTES = 255  # a file name, on every file system a local lake may be on


@dataclass(frozen=True)
class Options:
    """How a raw copy is read into documents. ``name``: the file's path in its source when the
    copy is a later version (its key carries a timestamp), so a .txt or .md file keeps its id."""

    id_prefix: str = ""
    name: str = ""


def sidecar_key(raw_key: str) -> str:
    return raw_key + SIDECAR


def options_of(ws: Workspace, raw_key: str) -> Options:
    """The options ``raw_key`` was copied in with (the defaults when it has no sidecar)."""
    if len(posixpath.basename(sidecar_key(raw_key)).encode()) > NAME_BYTES:
        return Options()  # no file system could hold its sidecar: it has none
    try:
        raw = ws.lake.get(sidecar_key(raw_key))
        if len(raw) > SIDECAR_BYTES:  # a few small options: anything larger is not a sidecar
            raise ValueError(f"{len(raw):,} bytes, over {SIDECAR_BYTES:,}")
        data = json.loads(raw)
    except NotFound:
        return Options()
    except (ValueError, RecursionError) as exc:  # (nested past the parser's depth: RecursionError)
        raise InputError(f"{sidecar_key(raw_key)}: not a JSON object of options ({exc})") from None
    prefix = data.get("id_prefix", "") if isinstance(data, dict) else None
    name = data.get("name", "") if isinstance(data, dict) else None
    if not isinstance(prefix, str) or not isinstance(name, str):
        raise InputError(f"{sidecar_key(raw_key)}: id_prefix and name must be strings")
    return Options(id_prefix=prefix, name=name)


def copy_in(ws: Workspace, source: str, rel: str, handle: IO[bytes], options: Options) -> str:
    """Copy into ``raw/<source>/<rel>`` unless the same bytes with the same options are there;
    raw objects are never replaced (another version or other options get a timestamped key)."""
    key = f"raw/{source}/{rel}"
    name = posixpath.basename(rel).encode("utf-8", "surrogateescape")
    if len(name) > NAME_BYTES - len(SIDECAR) - len(".20261208T012859218590"):
        raise InputError(
            f"{rel!r}: a file name of {len(name):,} bytes is too long for the lake (a later "
            f"version and its options sidecar must fit {NAME_BYTES} bytes): rename it"
        )
    if ws.lake.exists(key):  # the same bytes again? (a first copy is hashed as it is written)
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        handle.seek(0)
        if ws.lake.info(key).etag == digest.hexdigest() and options_of(ws, key) == options:
            return key
        stem, ext = posixpath.splitext(key)
        options = replace(options, name=rel)
        for version in _versions(ws, stem, ext):  # one of its later versions, again?
            etag = version.etag or ws.lake.info(version.key).etag  # (a listing may leave it out)
            if etag == digest.hexdigest() and options_of(ws, version.key) == options:
                return version.key
        key = f"{stem}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}{ext}"
    sidecar = sidecar_key(key)
    # first the sidecar, then the copy: whoever sees the copy finds its options (a sidecar left
    # from a crash before the copy is overwritten here)
    if options != Options() or ws.lake.exists(sidecar):
        ws.lake.put(sidecar, json.dumps({**asdict(options), "source": source}).encode())
    ws.lake.put_file(key, handle)
    return key


def _versions(ws: Workspace, stem: str, ext: str) -> list[ObjectInfo]:
    """The later versions of ``stem + ext`` (``stem.<timestamp><ext>``), oldest first."""
    name = posixpath.basename(stem)
    found = []
    for info in ws.lake.list(posixpath.dirname(stem) + "/"):
        base = posixpath.basename(info.key)
        stamp = base[len(name) + 1 : len(base) - len(ext)] if ext else base[len(name) + 1 :]
        if (
            base.startswith(name + ".")
            and base.endswith(ext)
            and len(stamp) == 21
            and stamp[8] == "T"
            and (stamp[:8] + stamp[9:]).isdigit()
        ):
            found.append(info)
    return sorted(found, key=lambda i: i.key)
