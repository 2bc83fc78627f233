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
from embedlake.encoders import Encoder, load_folder, sentence_transformers
from embedlake.errors import Conflict, InputError, NotFound
from embedlake.workspace import Workspace

PREFIX = "models"
MANIFEST = "manifest.json"
CARD = "card.md"  # written after benchmarking; like the manifest, not part of the content
FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: "$" takes a final "\n"
_loaded: dict[tuple[str, str], Encoder] = {}  # (content hash, options) → encoder, per process


def hash_folder(folder: Path) -> tuple[str, dict[str, str]]:
    """(content hash, {relative path: sha256}) over every file but the manifest and the card."""
    files: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in (MANIFEST, CARD):
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
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(f"invalid model name or version {name!r}: letters, digits, '.', '_', '-'")
    return name


def write_folder(
    ws: Workspace,
    folder: Path,
    *,
    name: str,
    kind: str,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    register: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Check that ``folder`` loads, then copy it into ``models/<name>/<version>/`` with its
    manifest (written last: a folder without one is an upload in progress).

    The manifest's arrival is what the ``register-model`` function reacts to: a model it finds
    unregistered is new, and gets a release built. ``register`` registers the model before the
    manifest is written, so a model registered here (the default model, a serving form) is
    never taken for a new arrival, however fast the runtime reacts."""
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
    key = (content_hash, repr(sorted(options.items())))
    # refuse what cannot load (unless this process holds the very same model already)
    encoder = _loaded.get(key) or load_folder(folder, manifest, **options)
    manifest["dim"] = encoder.dim
    prefix = f"{PREFIX}/{name}/{version}"
    try:
        existing = ws.catalog.registry.model(f"{name}@{version}")
    except NotFound:
        existing = None
    if existing is not None and existing.content_hash != content_hash:
        raise Conflict(
            f"model {name}@{version} is already registered with different content "
            f"(hash {existing.content_hash[:12]}); versions are immutable"
        )
    if existing is None or not ws.lake.exists(f"{prefix}/{MANIFEST}"):
        for rel in files:
            with (folder / rel).open("rb") as f:
                ws.lake.put_file(f"{prefix}/{rel}", f)
        if register:
            _add(ws, prefix, manifest)
        ws.lake.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    elif register:
        _add(ws, prefix, manifest)  # a no-op when registered with the same hash
    _loaded[key] = encoder
    return prefix, manifest


def _add(ws: Workspace, prefix: str, manifest: dict[str, Any]) -> ModelRecord:
    return ws.catalog.registry.add_model(
        name=manifest["name"],
        version=manifest["version"],
        kind=manifest["kind"],
        dim=int(manifest["dim"]),
        content_hash=manifest["content_hash"],
        prefix=prefix,
        manifest=manifest,
    )


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
    """Copy ``folder`` into the lake and register it now (the CLI's `embed --model` path)."""
    _, manifest = write_folder(
        ws,
        folder,
        name=name,
        kind=kind,
        version=version,
        extra=extra,
        options=options,
        register=True,
    )
    return ws.catalog.registry.model(f"{manifest['name']}@{manifest['version']}")


def register_from_lake(ws: Workspace, prefix: str, **options: Any) -> tuple[ModelRecord, bool]:
    """Verify a model folder that arrived in the lake and register it.

    Returns the record and whether it is new. A broken folder (unreadable manifest, missing or
    changed files, a hash mismatch, a model that does not load or has another dimension) raises
    InputError naming the problem, and registers nothing.
    """
    where = f"model folder {prefix}/"
    try:
        manifest = json.loads(ws.lake.get(f"{prefix}/{MANIFEST}"))
    except NotFound:
        raise InputError(f"{where}: no {MANIFEST}") from None
    except ValueError as exc:
        raise InputError(f"{where}: {MANIFEST} is not valid JSON: {exc}") from None
    missing = [
        k for k in ("name", "version", "kind", "content_hash", "files", "dim") if k not in manifest
    ]
    if missing:
        raise InputError(f"{where}: manifest lacks {', '.join(missing)}")
    parts = prefix.split("/")
    if parts[-2:] != [manifest["name"], manifest["version"]]:
        raise InputError(
            f"{where}: manifest names {manifest['name']}@{manifest['version']}, the "
            f"folder is {'/'.join(parts[-2:])}"
        )
    files: dict[str, str] = manifest["files"]
    present = {i.key[len(prefix) + 1 :] for i in ws.lake.list(prefix)} - {MANIFEST, CARD}
    if set(files) - present:
        raise InputError(f"{where}: missing files {', '.join(sorted(set(files) - present))}")
    expected = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    if expected != manifest["content_hash"]:
        raise InputError(f"{where}: content_hash does not match the files listed")
    try:
        existing = ws.catalog.registry.model(f"{manifest['name']}@{manifest['version']}")
    except NotFound:
        existing = None
    if existing is not None:
        if existing.content_hash != manifest["content_hash"]:
            raise Conflict(f"{where}: {existing.ref} is registered with other content")
        return existing, False
    record = ModelRecord(
        0,
        manifest["name"],
        manifest["version"],
        manifest["kind"],
        int(manifest["dim"]),
        manifest["content_hash"],
        prefix,
        manifest,
    )
    load(ws, record, **options)  # hash of every file, loadable, right dimension
    return _add(ws, prefix, manifest), True


def materialise(ws: Workspace, record: ModelRecord) -> Path:
    """A local folder holding the model's files: the lake folder itself, or a verified copy."""
    local = ws.lake.local_path(f"{record.prefix}/{MANIFEST}")
    if local is not None and Path(local).is_file():
        return Path(local).parent
    cache = ws.settings.workspace / ".cache" / "models" / record.content_hash
    if (cache / MANIFEST).is_file():
        return cache
    # copied beside the cache and renamed into place: on the same filesystem (a rename across
    # filesystems fails), and a reader never sees half a model
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
    try:
        for info in ws.lake.list(record.prefix):
            target = tmp / info.key[len(record.prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with ws.lake.open(info.key) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            tmp.rename(cache)
        except OSError:
            if not (cache / MANIFEST).is_file():  # not a concurrent copy that finished first
                raise
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


def encoder_options(ws: Workspace, model: ModelRecord | str) -> dict[str, object]:
    """The load options the workspace's settings give a model (or a model kind): the one place
    where ``[embed] device`` and ``max_seq_length`` reach an encoder."""
    kind = model if isinstance(model, str) else model.kind
    if kind != sentence_transformers.KIND:
        return {}
    return {"device": ws.settings.embed.device, "max_seq_length": ws.settings.embed.max_seq_length}


def load_encoder(ws: Workspace, record: ModelRecord) -> Encoder:
    """The model's encoder with the workspace's options (verified as :func:`load` does)."""
    return load(ws, record, **encoder_options(ws, record))
