"""What to serve: resolve a release, an alias or a model to its index, and load that index from the
lake.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from embedlake import index as vector_index
from embedlake.catalog.registry import IndexRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.errors import NotFound
from embedlake.index import VectorIndex
from embedlake.search.bm25 import Bm25
from embedlake.search.build import catalog_url
from embedlake.workspace import Workspace


def load_index(ws: Workspace, record: IndexRecord, *, mutable: bool = False) -> VectorIndex:
    """Load from the lake folder in place when it is local (memory-mapped where possible);
    ``mutable``: to be changed and saved elsewhere (the lake's files are never written), with
    the effort it was saved with, whatever the settings say."""
    first = next(iter(ws.lake.list(record.prefix)), None)
    if first is None:
        raise NotFound(f"index {record.id}: no files under {record.prefix}/")
    local = ws.lake.local_path(first.key)
    overrides: dict[str, Any] = (
        {"mutable": True}
        if mutable
        else {
            "ef_search": ws.settings.index.ef_search,
            "rescore": ws.settings.index.rescore,
            "nprobe": ws.settings.index.nprobe,
        }
    )
    if record.engine == "pgvector":
        overrides["url"] = catalog_url(ws)
    if local is not None:
        return vector_index.load(record.engine, Path(local).parent, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        for info in ws.lake.list(record.prefix):
            with (
                ws.lake.open(info.key) as src,
                (Path(tmp) / info.key.rsplit("/", 1)[1]).open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
        return vector_index.load(record.engine, Path(tmp), **overrides)


BM25_FOLDER = "bm25"  # under a release's prefix: the BM25 it built over its passages


def load_bm25(ws: Workspace, prefix: str) -> Bm25:
    """A BM25 saved in the lake: in place when the lake is local (memory-mapped), else read."""
    first = next(iter(ws.lake.list(prefix)), None)
    if first is None:
        raise NotFound(f"no BM25 under {prefix}/")
    local = ws.lake.local_path(first.key)
    if local is not None:
        return Bm25.load(Path(local).parent)
    with tempfile.TemporaryDirectory() as tmp:
        for info in ws.lake.list(prefix):
            (Path(tmp) / info.key.rsplit("/", 1)[1]).write_bytes(ws.lake.get(info.key))
        return Bm25.load(Path(tmp), mmap=False)


def resolve(
    ws: Workspace,
    model_ref: str | None = None,
    *,
    release: str | None = None,
    alias: str | None = None,
    index_id: int | None = None,
) -> tuple[ReleaseRecord | None, IndexRecord]:
    """What to serve: a release, the release behind an alias, a model's newest index, an index
    by id, or by default the release behind the gate's alias (``production``), else the newest
    index."""
    registry, releases = ws.catalog.registry, ws.catalog.releases
    if index_id is not None:  # a given index (of the release, when one is named)
        return (releases.get(release) if release else None), registry.index(index_id)
    if release is None and model_ref is None:
        release = releases.alias(alias or ws.settings.gate.alias)
        if release is None and alias is not None:
            raise NotFound(f"alias {alias!r} points to no release")
    if release is not None:
        record = releases.get(release)
        if record.index_id is None:
            raise NotFound(f"release {release} has no index yet (it is {record.status})")
        return record, registry.index(record.index_id)
    model_id = registry.model(model_ref).id if model_ref else None
    return None, registry.latest_index(model_id)
