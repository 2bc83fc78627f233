"""Catalog rows the lake's data implies: documents (the curated log replayed), models (manifests,
every file checked), embedding runs, shards and coverage, and benchmark datasets."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq

from embedlake.catalog import schema as t
from embedlake.errors import EmbedlakeError
from embedlake.ingest import curated
from embedlake.ingest.datasets import parse
from embedlake.recover.rows import Rows
from embedlake.workspace import Workspace

_CHUNK = 1 << 20


# -- documents: the curated log replayed ---------------------------------------------------------
def documents(ws: Workspace, keys: list[str], rows: Rows) -> None:
    parts = []
    for key in keys:
        if key.startswith(f"{curated.PREFIX}/") and key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(ws.lake.get(key)))
            written = table.column("written_at").to_pylist()
            parts.append(
                (min(written) if written else datetime.min.replace(tzinfo=UTC), key, table)
            )
    docs: dict[str, dict[str, Any]] = {}
    for _, _, table in sorted(parts, key=lambda p: (p[0], p[1])):  # the log in time order
        for row in table.to_pylist():
            _replay(docs, row)
    for doc in docs.values():
        rows.add(t.documents, doc)


def _replay(docs: dict[str, dict[str, Any]], row: dict[str, Any]) -> None:
    """One row of the log over the documents so far: an upsert replaces the text (and revives a
    tombstone), a deletion stamps the tombstone and keeps the last text (the audit trail)."""
    at = row["written_at"]
    old = docs.get(row["id"])
    if row["op"] == "delete" and old is not None:
        old["deleted_at"] = at
        return
    docs[row["id"]] = {
        "id": row["id"],
        "source": row["source"],
        "title": row["title"],
        "text": row["text"],
        "metadata": json.loads(row["metadata"]),
        "content_hash": row["content_hash"],
        "created_at": old["created_at"] if old else at,
        "updated_at": at,
        "deleted_at": at if row["op"] == "delete" else None,
    }


# -- models: manifests, every file checked -------------------------------------------------------
def models(ws: Workspace, keys: list[str], rows: Rows) -> None:
    found = []
    for key in keys:
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == "manifest.json":
            prefix = "/".join(parts[:3])
            try:
                found.append((prefix, _manifest(ws, prefix, set(keys))))
            except (EmbedlakeError, ValueError, KeyError) as exc:
                rows.lost.append(f"model folder {prefix}/: {exc}")
    found.sort(key=lambda m: (str(m[1].get("created_at", "")), m[0]))  # registration order
    for number, (prefix, manifest) in enumerate(found, start=1):
        ref = f"{manifest['name']}@{manifest['version']}"
        rows.models[ref] = (number, manifest["content_hash"])
        created = manifest.get("created_at")
        rows.add(
            t.models,
            {
                "id": number,
                "name": manifest["name"],
                "version": manifest["version"],
                "kind": manifest["kind"],
                "dim": int(manifest["dim"]),
                "content_hash": manifest["content_hash"],
                "prefix": prefix,
                "manifest": manifest,
                "created_at": datetime.fromisoformat(created) if created else datetime.now(UTC),
            },
        )


def _manifest(ws: Workspace, prefix: str, keys: set[str]) -> dict[str, Any]:
    """The manifest of a model folder whose files are all there with the content it names."""
    manifest: dict[str, Any] = json.loads(ws.lake.get(f"{prefix}/manifest.json"))
    if prefix.split("/")[1:] != [manifest["name"], manifest["version"]]:
        raise ValueError(f"the manifest names {manifest['name']}@{manifest['version']}")
    files: dict[str, str] = manifest["files"]
    listed = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    if listed != manifest["content_hash"]:
        raise ValueError("content_hash does not match the files listed")
    for rel, digest in files.items():
        key = f"{prefix}/{rel}"
        if key not in keys:
            raise ValueError(f"{rel} is missing")
        if _sha256(ws, key) != digest:
            raise ValueError(f"{rel} differs from its manifest's hash")
    return manifest


def _sha256(ws: Workspace, key: str) -> str:
    digest = hashlib.sha256()
    with ws.lake.open(key) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- embeddings: runs, shards and coverage -------------------------------------------------------
def embeddings(ws: Workspace, keys: list[str], rows: Rows) -> None:
    runs: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        parts = key.split("/")  # embeddings/<name>/<version>/runs/<run>/<file>
        if len(parts) == 6 and parts[3] == "runs":
            runs["/".join(parts[:5])].append(key)
    # (model id, chunking, doc id) → (content hash, shard key, passages, characters cut)
    covered: dict[tuple[int, str, str], tuple[str, str, int, int]] = {}
    live = {d["id"]: d["content_hash"] for d in rows.tables[t.documents.name]}
    for number, (folder, files) in enumerate(sorted(runs.items()), start=1):
        _, name, version, _, _ = folder.split("/")
        model = rows.models.get(f"{name}@{version}")
        if model is None or f"{folder}/plan.parquet" not in files:
            what = "its model is not recovered" if model is None else "it has no plan"
            rows.lost.append(f"embedding run {folder}/: {what}")
            continue
        _run(ws, number, model, folder, sorted(files), rows, covered, live)
    for (model_id, chunker, doc_id), (content_hash, shard, passages, cut) in covered.items():
        rows.add(
            t.embedded,
            {
                "model_id": model_id,
                "chunker": chunker,
                "doc_id": doc_id,
                "content_hash": content_hash,
                "shard_key": shard,
                "passages": passages,
                "cut": cut,
            },
        )


def _run(
    ws: Workspace,
    run_id: int,
    model: tuple[int, str],
    folder: str,
    files: list[str],
    rows: Rows,
    covered: dict[tuple[int, str, str], tuple[str, str, int, int]],
    live: dict[str, str],
) -> None:
    now = datetime.now(UTC)
    plan = pq.read_table(io.BytesIO(ws.lake.get(f"{folder}/plan.parquet")), columns=["shard"])
    planned = set(plan.column("shard").to_pylist())
    chunker = (plan.schema.metadata or {}).get(b"chunker", b"").decode()
    done = 0
    for key in files:
        leaf = key.rsplit("/", 1)[1]
        if not (leaf.startswith("shard-") and leaf.endswith(".parquet")):
            continue
        buf = io.BytesIO(ws.lake.get(key))
        names = pq.ParquetFile(buf).schema_arrow.names  # the vectors are not needed here
        columns = [c for c in ("id", "doc", "content_hash", "cut") if c in names]
        table = pq.read_table(buf, columns=columns)
        meta = table.schema.metadata or {}
        if meta.get(b"model_hash", b"").decode() != model[1]:
            rows.lost.append(f"embedding shard {key}: not written by its folder's model")
            continue
        shard = int(leaf[len("shard-") : -len(".parquet")])
        done += shard in planned
        rows.add(
            t.embedding_shards,
            {
                "run_id": run_id,
                "shard": shard,
                "key": key,
                "n_documents": table.num_rows,
                "finished_at": now,
            },
        )
        docs = table.column("doc" if "doc" in table.column_names else "id").to_pylist()
        cuts = table.column("cut").to_pylist() if "cut" in table.column_names else [0] * len(docs)
        passages = Counter(docs)
        for doc_id, content_hash, cut in zip(
            docs, table.column("content_hash").to_pylist(), cuts, strict=True
        ):
            # a vector of the document's current text wins over one of an older text
            held = covered.get((model[0], chunker, doc_id))
            if held is None or live.get(doc_id) != held[0]:
                covered[(model[0], chunker, doc_id)] = (content_hash, key, passages[doc_id], cut)
    finished = done == len(planned)
    rows.add(
        t.embedding_runs,
        {
            "id": run_id,
            "model_id": model[0],
            "status": "done" if finished else "running",  # a running one is resumed by `embed`
            "n_documents": plan.num_rows,
            "n_shards": len(planned),
            "plan_key": f"{folder}/plan.parquet",
            "chunker": chunker,
            "started_at": now,
            "finished_at": now if finished else None,
            "seconds": None,
        },
    )


# -- benchmark datasets --------------------------------------------------------------------------
def datasets(ws: Workspace, keys: list[str], rows: Rows) -> None:
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != "dataset.json":
            continue
        prefix, name = "/".join(parts[:2]), parts[1]
        try:
            meta = json.loads(ws.lake.get(key))
            dataset = parse(
                name,
                ws.lake.get(f"{prefix}/queries.jsonl"),
                ws.lake.get(f"{prefix}/qrels.tsv"),
                meta.get("id_prefix", ""),
            )
        except (EmbedlakeError, ValueError) as exc:
            rows.lost.append(f"benchmark dataset {prefix}/: {exc}")
            continue
        rows.add(
            t.datasets,
            {
                "name": name,
                "prefix": prefix,
                "n_queries": len(dataset.queries),
                "n_judgments": sum(len(v) for v in dataset.qrels.values()),
                "created_at": datetime.now(UTC),
            },
        )
