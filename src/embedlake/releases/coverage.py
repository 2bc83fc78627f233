"""Coverage: which live documents a release's index holds, and bringing a release up to date.

An alias never points to a release that is behind the catalog (docs/releases.md, Coverage). A
release's index holds what its model had embedded when the index was built; the (document,
content hash) pairs it was built from are written beside the release (``coverage.parquet``,
sorted by id), so what it lacks is counted exactly: live documents whose current content is not
among them. Both sides are read in id order a page at a time and merged, so no step holds every
id (ten million of them would be gigabytes as a Python dict). Catching up is the build's own
code: embed what the release's model lacks (that model is the release's serving form, so its own
form and chunking), then index the release again (through its own PCA where that backs its
index).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.documents import pairs_hash
from embedlake.catalog.registry import ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.embeddings.batch import embed_in_steps
from embedlake.errors import NotFound
from embedlake.reduce.store import load_reducer
from embedlake.search.build import BuildReport, build_index
from embedlake.search.update import UPDATE_SHARE, update_index
from embedlake.steps import Steps
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

FILE = "coverage.parquet"
OLD_FILE = "coverage.json"  # written by releases indexed before the snapshot was streamed
HASH_CHARS = 16  # of a content hash: enough to tell two versions of a document apart
_SCHEMA = pa.schema([("id", pa.string()), ("hash", pa.string())])
_BATCH = 50_000  # pairs a Parquet row group holds


@dataclass(frozen=True)
class Held:
    """What an index built now holds: a local Parquet file of (id, hash prefix) sorted by id,
    how many, and the hash of the full pairs (as ``corpus_hash`` hashes the live corpus)."""

    path: Path
    documents: int
    corpus_hash: str


@contextmanager
def held(ws: Workspace, model: ModelRecord, chunker: str) -> Iterator[Held]:
    """The live documents the model has embedded at their current content with ``chunker``,
    taken now (before a build begins, so a document embedded meanwhile makes the release look
    behind, never ahead), written to a temporary file for as long as the block runs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILE
        counted = [0]
        with pq.ParquetWriter(path, _SCHEMA, compression="zstd") as writer:
            pairs = ws.catalog.registry.iter_current(model.id, chunker)
            digest = pairs_hash(_written(pairs, writer, counted))
        yield Held(path, counted[0], digest)


def _written(
    pairs: Iterable[tuple[str, str]], writer: pq.ParquetWriter, counted: list[int]
) -> Iterator[tuple[str, str]]:
    """``pairs`` passed on as they are written to ``writer`` a batch at a time (the hash prefix
    only), counted in ``counted[0]``."""
    ids: list[str] = []
    hashes: list[str] = []
    for pair in pairs:
        ids.append(pair[0])
        hashes.append(pair[1][:HASH_CHARS])
        if len(ids) == _BATCH:
            writer.write_table(pa.table([ids, hashes], schema=_SCHEMA))
            counted[0] += len(ids)
            ids, hashes = [], []
        yield pair
    if ids:
        writer.write_table(pa.table([ids, hashes], schema=_SCHEMA))
        counted[0] += len(ids)


def record(ws: Workspace, release_id: str, index_id: int, held: Held) -> None:
    """Point the release at a new index built from ``held``, with its snapshot."""
    release = ws.catalog.releases.get(release_id)
    with held.path.open("rb") as f:
        ws.lake.put_file(f"{release.prefix}/{FILE}", f)
    if ws.lake.exists(f"{release.prefix}/{OLD_FILE}"):
        ws.lake.delete(f"{release.prefix}/{OLD_FILE}")  # stale now: never read again
    ws.catalog.releases.update(
        release_id,
        index_id=index_id,
        snapshot={
            "documents": held.documents,
            "corpus_hash": held.corpus_hash,
            "live_documents": ws.catalog.documents.count(),
        },
    )


def index_release(ws: Workspace, release_id: str) -> float:
    """Index the release's model's vectors (reduced by the release's PCA where it backs the
    index) and point the release at the index: the build's index stage; returns its seconds."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    with held(ws, model, release.chunker) as before:
        built = build_index(ws, model, reducer=load_reducer(ws, release), chunker=release.chunker)
        record(ws, release_id, built.index_id, before)
    _report(ws, release_id, built)
    return time.perf_counter() - started


def update_release(ws: Workspace, release_id: str) -> float:
    """Bring the release's index up to date with the catalog, updated in place of a build where
    few documents changed (:func:`reindexed`), and point the release at it; returns its seconds."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    with held(ws, model, release.chunker) as now:
        built = reindexed(ws, release, model, now)
        if built is not None:
            record(ws, release_id, built.index_id, now)
    if built is not None:
        _report(ws, release_id, built)
    return time.perf_counter() - started


def reindexed(
    ws: Workspace, release: ReleaseRecord, model: ModelRecord, now: Held
) -> BuildReport | None:
    """The index the release is to hold ``now``: its index updated with the documents that
    changed since its snapshot (``search.update``), or built again where that cannot be done;
    None when nothing changed."""
    reducer = load_reducer(ws, release)
    key = f"{release.prefix}/{FILE}"
    if release.index_id is not None and ws.lake.exists(key):
        base = ws.catalog.registry.index(release.index_id)
        with ws.lake.open(key) as f:
            then = _snapshot(pq.ParquetFile(f))
            diff = changed(then, _snapshot(pq.ParquetFile(now.path)), UPDATE_SHARE * base.n_vectors)
        if diff is not None and not diff:
            return None
        updated = None if diff is None else update_index(ws, model, base, diff, reducer)
        if updated is not None:
            return updated
    return build_index(ws, model, reducer=reducer, chunker=release.chunker)


def changed(
    then: Iterable[tuple[str, str]], now: Iterable[tuple[str, str]], limit: float
) -> set[str] | None:
    """Ids whose (id, hash) pair differs between two streams sorted by id in code-point order:
    in one of them only, or at another hash; None as soon as they are more than ``limit``."""
    out: set[str] = set()
    a, b = iter(then), iter(now)
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            out.add(x[0])
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            out.add(y[0])
            y = next(b, None)
        else:
            if x[1] != y[1]:
                out.add(x[0])
            x, y = next(a, None), next(b, None)
        if len(out) > limit:
            return None
    return out


def _report(ws: Workspace, release_id: str, built: BuildReport) -> None:
    latest = ws.catalog.releases.get(release_id)
    index = {"id": built.index_id, "engine": built.engine, "vectors": built.n_vectors}
    ws.catalog.releases.update(
        release_id, report={**latest.report, "index": {**index, "tuning": built.tuning}}
    )


def lacking(ws: Workspace, release_id: str) -> int:
    """How many live documents the release's index does not hold at their current content."""
    release = ws.catalog.releases.get(release_id)
    if release.index_id is None:
        return ws.catalog.documents.count()
    live = ws.catalog.documents.iter_live_hashes()
    key = f"{release.prefix}/{FILE}"
    if ws.lake.exists(key):
        with ws.lake.open(key) as f:
            return _missing(live, _snapshot(pq.ParquetFile(f)))
    try:
        old: dict[str, str] = json.loads(ws.lake.get(f"{release.prefix}/{OLD_FILE}"))
    except NotFound:
        return _estimate(ws, release)
    return sum(1 for d, h in live if old.get(d) != h[:HASH_CHARS])


def _snapshot(file: pq.ParquetFile) -> Iterator[tuple[str, str]]:
    for batch in file.iter_batches(batch_size=_BATCH):
        yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def _missing(live: Iterable[tuple[str, str]], held: Iterable[tuple[str, str]]) -> int:
    """Live (id, hash) pairs whose id is not in ``held`` at that hash's prefix: a merge of two
    streams sorted by id in code-point order."""
    rest = iter(held)
    at = next(rest, None)
    missing = 0
    for doc_id, content_hash in live:
        while at is not None and at[0] < doc_id:
            at = next(rest, None)
        if at is None or at[0] != doc_id or at[1] != content_hash[:HASH_CHARS]:
            missing += 1
    return missing


def _estimate(ws: Workspace, release: ReleaseRecord) -> int:
    """A release indexed before coverage files were written: its index's size against what its
    model has embedded now gives a lower bound; any gap at all makes it behind."""
    assert release.index_id is not None
    indexed = ws.catalog.registry.index(release.index_id).n_vectors
    live = ws.catalog.documents.count()
    _, embedded = ws.catalog.registry.count_current(release.model_id, release.chunker)
    return max(live - indexed, live - embedded, 0)


def catch_up(ctx: Steps, ws: Workspace, release_id: str) -> int:
    """Bring a release up to date: embed what its model lacks (one fan-out task per shard) and
    index it again. Returns how many documents it lacked; 0 when it was current (nothing runs)."""
    behind = ctx.step(f"lacking {release_id}", lacking, ws, release_id)
    if not behind:
        return 0
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    embed_in_steps(ctx, ws, model.ref, f"catch-up {release_id}", release.chunker)
    ctx.map(f"re-index {release_id}", update_release, [release_id])
    log.info("release %s caught up %d documents", release_id, behind)
    return int(behind)
