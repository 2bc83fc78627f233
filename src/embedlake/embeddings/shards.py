"""One shard of a run: embedded, written as Parquet under the model's prefix, and recorded with the
(document, content hash) pairs it covers in one catalog transaction.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord, RunRecord
from embedlake.encoders import Encoder
from embedlake.errors import ModelMismatch
from embedlake.models import artifacts
from embedlake.workspace import Workspace


def shard_schema(model: ModelRecord) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("content_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), model.dim)),
        ],
        metadata={"model": model.ref, "model_hash": model.content_hash},
    )


def embed_shard_task(ws: Workspace, item: tuple[str, int, int]) -> int:
    """One shard of a planned run, as a fan-out task: ``(model ref, run id, shard number)``.

    Safe to deliver twice: a shard already recorded is not embedded again.
    """

    model_ref, run_id, number = item
    registry = ws.catalog.registry
    model = registry.model(model_ref)
    run = registry.run(run_id)
    if number in registry.done_shards(run.id):
        return 0
    table = pq.read_table(io.BytesIO(ws.lake.get(run.plan_key)), filters=[("shard", "=", number)])
    shard = list(
        zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist(), strict=True)
    )
    encoder = artifacts.load_encoder(ws, model)
    return embed_shard(ws, model, encoder, run, number, shard)


def embed_shard(
    ws: Workspace,
    model: ModelRecord,
    encoder: Encoder,
    run: RunRecord,
    number: int,
    shard: list[tuple[str, str]],
) -> int:
    docs = ws.catalog.documents.get_many([d for d, _ in shard])
    # A document deleted since the plan is skipped; one changed since is embedded as it is now.
    live = [docs[d] for d, _ in shard if d in docs]
    vectors = encoder.encode([d.full_text for d in live], batch_size=ws.settings.embed.batch_size)
    if vectors.shape != (len(live), model.dim):
        raise ModelMismatch(
            f"model {model.ref} returned vectors of shape {vectors.shape}, "
            f"expected ({len(live)}, {model.dim})"
        )
    table = pa.table(
        {
            "id": [d.id for d in live],
            "content_hash": [d.content_hash for d in live],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), model.dim),
        },
        schema=shard_schema(model),
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    key = f"{run.plan_key.rsplit('/', 1)[0]}/shard-{number:05d}.parquet"
    ws.lake.put(key, buf.getvalue())
    recorded = ws.catalog.registry.finish_shard(
        run, number, key, [(d.id, d.content_hash) for d in live]
    )
    return len(live) if recorded else 0
