"""One shard of a run: its documents split into passages the run's way, embedded, written as
Parquet under the model's prefix (one row per passage), and recorded with the documents it covers
(their content, passages and what was cut) in one catalog transaction.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.registry import Covered, ModelRecord, RunRecord
from embedlake.embeddings.passages import Chunking, Splitter
from embedlake.embeddings.plan import read_shard
from embedlake.encoders import Encoder, token_window
from embedlake.errors import ModelMismatch
from embedlake.models import artifacts
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

# Vectors and unique ids neither repeat nor get filtered by value: a dictionary tried on every
# page and min/max kept for each only slow the write (bench/reduced_write.py: 1.39× without them;
# docs/benchmarks.md, section 18). The reducer writes its vectors so too.
WRITER: dict[str, Any] = {"use_dictionary": False, "write_statistics": False}


def shard_schema(model: ModelRecord, chunker: str = "") -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),  # the passage's key (embeddings.passages)
            ("doc", pa.string()),
            ("content_hash", pa.string()),
            ("cut", pa.int32()),  # characters of the document no passage holds
            ("vector", pa.list_(pa.float32(), model.dim)),
        ],
        metadata={"model": model.ref, "model_hash": model.content_hash, "chunker": chunker},
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
    encoder = artifacts.load_encoder(ws, model)
    return embed_shard(ws, model, encoder, run, number, read_shard(ws, run, number))


def embed_shard(
    ws: Workspace,
    model: ModelRecord,
    encoder: Encoder,
    run: RunRecord,
    number: int,
    shard: list[tuple[str, str]],
) -> int:
    docs = ws.catalog.documents.contents([d for d, _ in shard])
    # A document deleted since the plan is skipped; one changed since is embedded as it is now.
    live = [docs[d] for d, _ in shard if d in docs]
    splitter = Splitter(Chunking.from_key(run.chunker), token_window(encoder))
    splits = splitter.split_many([(d.id, d.title, d.text) for d in live])
    passages = [p for s in splits for p in s.passages]
    vectors = encoder.encode([p.text for p in passages], batch_size=ws.settings.embed.batch_size)
    if vectors.shape != (len(passages), model.dim):
        raise ModelMismatch(
            f"model {model.ref} returned vectors of shape {vectors.shape}, "
            f"expected ({len(passages)}, {model.dim})"
        )
    cut = sum(1 for s in splits if s.cut)
    if cut:
        log.warning(
            "%d of %d documents are longer than %s embeds and were cut (see `embedlake status`)",
            cut,
            len(live),
            f"chunking {run.chunker}" if run.chunker else "the encoder's window",
        )
    table = pa.table(
        {
            "id": [p.key for p in passages],
            "doc": [d.id for d, s in zip(live, splits, strict=True) for _ in s.passages],
            "content_hash": [
                d.content_hash for d, s in zip(live, splits, strict=True) for _ in s.passages
            ],
            "cut": [s.cut for s in splits for _ in s.passages],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), model.dim),
        },
        schema=shard_schema(model, run.chunker),
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", **WRITER)
    key = f"{run.plan_key.rsplit('/', 1)[0]}/shard-{number:05d}.parquet"
    ws.lake.put(key, buf.getvalue())
    recorded = ws.catalog.registry.finish_shard(
        run,
        number,
        key,
        [
            Covered(d.id, d.content_hash, len(s.passages), s.cut)
            for d, s in zip(live, splits, strict=True)
        ],
    )
    return len(live) if recorded else 0
