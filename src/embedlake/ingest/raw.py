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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO

from embedlake.errors import InputError, NotFound
from embedlake.workspace import Workspace

SIDECAR = ".ingest.json"


@dataclass(frozen=True)
class Options:
    """How a raw copy is read into documents."""

    id_prefix: str = ""


def sidecar_key(raw_key: str) -> str:
    return raw_key + SIDECAR


def options_of(ws: Workspace, raw_key: str) -> Options:
    """The options ``raw_key`` was copied in with (the defaults when it has no sidecar)."""
    try:
        data = json.loads(ws.lake.get(sidecar_key(raw_key)))
    except NotFound:
        return Options()
    except ValueError as exc:
        raise InputError(f"{sidecar_key(raw_key)}: not a JSON object of options ({exc})") from None
    prefix = data.get("id_prefix", "") if isinstance(data, dict) else None
    if not isinstance(prefix, str):
        raise InputError(f"{sidecar_key(raw_key)}: id_prefix must be a string")
    return Options(id_prefix=prefix)


def copy_in(ws: Workspace, source: str, rel: str, handle: IO[bytes], options: Options) -> str:
    """Copy into ``raw/<source>/<rel>`` unless the same bytes with the same options are there;
    raw objects are never replaced (another version or other options get a timestamped key)."""
    key = f"raw/{source}/{rel}"
    if ws.lake.exists(key):  # the same bytes again? (a first copy is hashed as it is written)
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        handle.seek(0)
        if ws.lake.info(key).etag == digest.hexdigest() and options_of(ws, key) == options:
            return key
        stem, ext = posixpath.splitext(key)
        key = f"{stem}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}{ext}"
    sidecar = sidecar_key(key)
    # first the sidecar, then the copy: whoever sees the copy finds its options (a sidecar left
    # from a crash before the copy is overwritten here)
    if options != Options() or ws.lake.exists(sidecar):
        ws.lake.put(sidecar, json.dumps({**asdict(options), "source": source}).encode())
    ws.lake.put_file(key, handle)
    return key
