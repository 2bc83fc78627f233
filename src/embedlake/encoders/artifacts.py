"""Model artifacts in the lake: ``models/<name>/<version>/`` + ``manifest.json``, content-hashed.

A model version is immutable: its content hash covers every file, is written into the manifest and
recorded in the catalog, and is checked again whenever the model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedlake.catalog.registry import ModelRecord
from embedlake.encoders import Encoder, load_folder
from embedlake.errors import InputError, NotFound
from embedlake.workspace import Workspace

PREFIX = "models"
MANIFEST = "manifest.json"
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_loaded: dict[tuple[str, str], Encoder] = {}  # (content hash, options) → encoder, per process


def hash_folder(folder: Path) -> tuple[str, dict[str, str]]:
    """(content hash, {relative path: sha256}) over every file except the manifest."""
    files: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        files[rel] = digest.hexdigest()
    if not files:
        raise InputError(f"{folder}: the model folder is empty")
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return total, files


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(f"invalid model name or version {name!r}: letters, digits, '.', '_', '-'")
    return name


def publish_folder(
    ws: Workspace,
    folder: Path,
    *,
    name: str,
    kind: str,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> ModelRecord:
    """Check that ``folder`` loads, then copy it into the lake and register it."""
    from embedlake import __version__

    check_name(name)
    content_hash, files = hash_folder(folder)
    version = check_name(version or content_hash[:12])
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "kind": kind,
        "content_hash": content_hash,
        "files": files,
        "created_at": datetime.now(UTC).isoformat(),
        "code_version": __version__,
        "normalized": True,
        **(extra or {}),
    }
    options = options or {}
    encoder = load_folder(folder, manifest, **options)  # refuse what cannot load
    manifest["dim"] = encoder.dim
    try:
        existing = ws.catalog.registry.model(f"{name}@{version}")
    except NotFound:
        existing = None
    if existing is not None and existing.content_hash == content_hash:
        return existing
    prefix = f"{PREFIX}/{name}/{version}"
    record = ws.catalog.registry.add_model(  # raises Conflict on a different hash
        name=name,
        version=version,
        kind=kind,
        dim=encoder.dim,
        content_hash=content_hash,
        prefix=prefix,
        manifest=manifest,
    )
    for rel in files:
        with (folder / rel).open("rb") as f:
            ws.lake.put_file(f"{prefix}/{rel}", f)
    # The manifest goes last: a folder without one is an upload in progress, never a model.
    ws.lake.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    _loaded[(content_hash, repr(sorted(options.items())))] = encoder
    return record


def materialise(ws: Workspace, record: ModelRecord) -> Path:
    """A local folder holding the model's files: the lake folder itself, or a verified copy."""
    local = ws.lake.local_path(f"{record.prefix}/{MANIFEST}")
    if local is not None and Path(local).is_file():
        return Path(local).parent
    cache = ws.settings.workspace / ".cache" / "models" / record.content_hash
    if (cache / MANIFEST).is_file():
        return cache
    tmp = Path(tempfile.mkdtemp(dir=cache.parent.parent if cache.parent.exists() else None))
    try:
        for info in ws.lake.list(record.prefix):
            target = tmp / info.key[len(record.prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with ws.lake.open(info.key) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def load(ws: Workspace, record: ModelRecord, **options: Any) -> Encoder:
    """The model's encoder, after checking its files against the registered content hash."""
    key = (record.content_hash, repr(sorted(options.items())))
    if key in _loaded:
        return _loaded[key]
    folder = materialise(ws, record)
    found, _ = hash_folder(folder)
    if found != record.content_hash:
        raise InputError(
            f"model {record.ref}: content hash mismatch (registered "
            f"{record.content_hash[:12]}, files give {found[:12]}); the artifact "
            f"was changed after registration"
        )
    encoder = load_folder(folder, record.manifest, **options)
    if encoder.dim != record.dim:
        raise InputError(
            f"model {record.ref}: produces {encoder.dim}-dimensional vectors, "
            f"the manifest says {record.dim}"
        )
    _loaded[key] = encoder
    return encoder
