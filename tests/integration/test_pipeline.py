"""Ingest → embed → index → search → warehouse on the embedded default, with real collections."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from embedlake import Workspace, warehouse
from embedlake.catalog.schema import embedded
from embedlake.embeddings.batch import chunking_for, embed
from embedlake.embeddings.plan import open_run, read_shard, shard_sizes
from embedlake.embeddings.processes import WORTH_DOCUMENTS, processes_for
from embedlake.embeddings.vectors import read_vectors
from embedlake.errors import InputError, ModelMismatch, NotFound
from embedlake.index.rabitq import lists_for
from embedlake.ingest import delete_document, ingest_path
from embedlake.machine import cores
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.load import load_index
from embedlake.search.searcher import Searcher
from tests.conftest import collection, write_jsonl


def _embed(ws: Workspace, spec: str = "lsa") -> tuple[object, object]:
    record = resolve_model(ws, spec)
    report = embed(ws, record, artifacts.load(ws, record))
    return record, report


def test_embed_is_incremental_and_tracks_changed_text(ws: Workspace, tmp_path: Path) -> None:
    ws.settings.embed.shard_size = 300
    ingest_path(ws, collection("med"))
    record, report = _embed(ws)
    assert report.embedded == 1033 and ws.catalog.registry.count_embedded(record.id) == 1033
    assert (
        len([o for o in ws.lake.list(f"embeddings/lsa/{record.version}") if "/shard-" in o.key])
        == 4
    )
    assert embed(ws, record, artifacts.load(ws, record)).planned == 0  # nothing left to do
    f = write_jsonl(
        tmp_path / "more.jsonl",
        [
            {"_id": "new1", "text": "cancer cells in mice"},
            {"_id": "new2", "text": "blood pressure"},
        ],
    )
    ingest_path(ws, f, source="med-extra")
    changed = ws.catalog.documents.get("5")
    ws.catalog.documents.upsert(
        [
            type(changed)(
                changed.id,
                changed.source,
                changed.title,
                "a completely different text about kidneys",
                changed.metadata,
            )
        ]
    )
    again = embed(ws, record, artifacts.load(ws, record))
    assert again.embedded == 3  # two new documents and one changed text
    ids, vectors = read_vectors(ws, record)
    assert len(ids) == 1035 and vectors.shape == (1035, record.dim)
    enc = artifacts.load(ws, record)
    expected = enc.encode([ws.catalog.documents.get("5").full_text])[0]
    assert np.allclose(vectors[ids.index("5")], expected, atol=1e-5)


def test_search_finds_relevant_documents_and_hides_deleted_ones(ws: Workspace) -> None:
    ingest_path(ws, collection("cranfield"))
    record, _ = _embed(ws)
    built = build_index(ws, record)
    assert built.n_vectors == 1398 and built.missing == 0
    searcher = Searcher(ws)
    assert searcher.record.params["whole"] and searcher.whole  # one vector a document
    hits = searcher.search("heat transfer in slabs", 5)
    assert len(hits) == 5
    assert any("slab" in h.title for h in hits)
    top = hits[0].id
    delete_document(ws, top)
    assert top not in [h.id for h in Searcher(ws).search("heat transfer in slabs", 5)]
    rebuilt = build_index(ws, record)
    assert rebuilt.n_vectors == 1397


def test_a_search_for_k_documents_costs_the_index_what_a_search_for_k_does(
    ws: Workspace,
) -> None:
    """The searcher fetches k + 10 (room for deleted documents) at the effort of k: on a
    whole-document HNSW index at ef 64, the distances faiss computes are those of a search for k
    at ef 64, not of one for k + 10 at ef 128 (``effort_for``'s per-hit scaling)."""
    ws.settings.index.ef_search = 64  # fixed, not tuned
    ingest_path(ws, collection("cranfield"))
    record, _ = _embed(ws)
    build_index(ws, record, engine="hnsw")
    searcher = Searcher(ws)
    query = searcher.encode(["heat transfer in slabs"])
    stats = faiss.cvar.hnsw_stats

    def distances(search: object) -> int:
        stats.reset()
        search()  # type: ignore[operator]
        return int(stats.ndis)

    served = distances(lambda: searcher.search_encoded(query, 10))
    at_k = distances(lambda: searcher.index.search(query, 10))
    deeper = distances(lambda: searcher.index.search(query, 20))
    assert served == at_k < deeper


def test_the_auto_engine_compresses_a_large_collection_and_serves_its_tuned_effort(
    ws: Workspace,
) -> None:
    ws.settings.index.compress_above = 1000  # cranfield's 1,398 documents count as large here
    ingest_path(ws, collection("cranfield"))
    record, _ = _embed(ws)
    built = build_index(ws, record)
    assert built.engine == "rabitq" and built.tuning is not None
    assert (built.tuning["knob"], built.tuning["reached"]) == ("nprobe", True)
    served = load_index(ws, ws.catalog.registry.index(built.index_id))  # what serving loads
    assert served.params() == {
        "nlist": lists_for(1398),  # for all: trained on a sample drawn before any is added
        "nprobe": built.tuning["value"],
        "rescore": built.tuning["settled"]["rescore"],
        "bits": 7,
    }
    hits = Searcher(ws).search("heat transfer in slabs", 5)
    assert len(hits) == 5 and any("slab" in h.title for h in hits)
    delete_document(ws, hits[0].id)
    assert hits[0].id not in [h.id for h in Searcher(ws).search("heat transfer in slabs", 5)]
    ws.settings.index.nprobe = 7  # a number in the settings is kept, not tuned
    fixed = build_index(ws, record)
    assert fixed.tuning is None
    assert load_index(ws, ws.catalog.registry.index(fixed.index_id)).params()["nprobe"] == 7
    ws.settings.index.compress_above = 2_000_000
    assert build_index(ws, record).engine == "rabitq-hnsw"  # the graph over codes, under 2M


@pytest.mark.parametrize("engine", ["hnsw", "rabitq", "rabitq-hnsw"])
def test_a_build_with_a_small_memory_setting_streams_the_shards_in_batches(
    ws: Workspace, tmp_path: Path, engine: str
) -> None:
    """``[index] build_memory`` of 1 MiB: batches of 128 LSA vectors from 7 shards, rabitq's
    lists trained on a 256-vector sample; the index is whole and current all the same."""
    ws.settings.embed.shard_size = 200
    ws.settings.index.engine, ws.settings.index.build_memory = engine, 1
    ingest_path(ws, collection("cranfield"))
    record, _ = _embed(ws)
    changed = ws.catalog.documents.get("7")
    rewritten = write_jsonl(tmp_path / "c.jsonl", [{"_id": "7", "text": "rewritten"}])
    ingest_path(ws, rewritten, source=changed.source)  # an update
    delete_document(ws, "8")  # deleted and changed after they were embedded
    built = build_index(ws, record)
    assert (built.n_vectors, built.missing) == (1396, 1)  # "7" waits to be embedded again
    assert built.tuning is not None and built.tuning["reached"]
    served = load_index(ws, ws.catalog.registry.index(built.index_id))
    ids, vectors = read_vectors(ws, record)  # what a build that reads them all would index
    assert sorted(served.ids()) == ids and "7" not in ids and "8" not in ids
    for row in (0, 700, len(ids) - 1):
        assert np.allclose(served.vector(ids[row]), vectors[row], atol=1e-6)
    if engine == "rabitq":
        assert served.params()["nlist"] == 256 // 64  # what a 1 MiB budget trains well
    hits = Searcher(ws).search(changed.text[:200], 5)
    assert len(hits) == 5 and "7" not in [h.id for h in hits]


def test_lsa_is_fitted_on_a_sample_and_embeds_every_document(ws: Workspace) -> None:
    ws.settings.embed.lsa_fit_sample = 300
    ingest_path(ws, collection("med"))
    record, report = _embed(ws)
    assert record.manifest["training_data"]["documents"] == 300
    assert record.manifest["training_data"]["live_documents"] == 1033
    # drawn from the ids alone: the documents a draw over the documents themselves keeps
    from embedlake.index.stream import sample_of

    docs = ws.catalog.documents
    assert sample_of(docs.iter_live_ids(page=100), 300, 0) == [
        d.id for d in sample_of(docs.iter_live(batch=70), 300, 0)
    ]
    assert report.embedded == 1033 and ws.catalog.registry.count_current(record.id, "") == (
        1033,
        1033,
    )
    ws.settings.embed.lsa_fit_sample = 200_000  # all of med: another model
    from embedlake.models.resolve import fit_lsa

    whole = fit_lsa(ws, name="lsa-all")
    assert whole.manifest["training_data"]["documents"] == 1033
    assert whole.content_hash != record.content_hash


def test_shards_embedded_in_two_processes_are_the_vectors_one_process_makes(
    ws: Workspace, tmp_path: Path
) -> None:
    ingest_path(ws, collection("med"))
    ws.settings.embed.shard_size = 100
    ws.settings.embed.processes = 2
    record = resolve_model(ws, "lsa")
    encoder = artifacts.load(ws, record)
    assert processes_for("auto", encoder, 11, WORTH_DOCUMENTS) == min(cores(), 11)
    assert processes_for("auto", encoder, 11, WORTH_DOCUMENTS - 1) == 1  # not worth a start
    assert processes_for(2, encoder, 11, 1033) == 2 and processes_for(4, encoder, 1, 1033) == 1
    done: list[int] = []
    report = embed(ws, record, encoder, progress=lambda n, total: done.append(n))
    assert report.embedded == 1033 and done[-1] == 1033 and len(done) == 12  # 0, then 11 shards
    assert ws.catalog.registry.count_current(record.id, "") == (1033, 1033)
    with Workspace.init(tmp_path / "one", environ={}) as alone:  # the same run in one process
        ingest_path(alone, collection("med"))
        alone.settings.embed.shard_size = 100
        alone.settings.embed.processes = 1
        same = resolve_model(alone, "lsa")
        assert same.content_hash == record.content_hash  # a seeded fit: the same model
        embed(alone, same, artifacts.load(alone, same))
        keys, vectors = read_vectors(alone, same)
    assert read_vectors(ws, record)[0] == keys
    assert np.array_equal(read_vectors(ws, record)[1], vectors)


def test_a_worker_reads_its_shard_of_the_plan_alone_and_a_plan_written_before_too(
    ws: Workspace,
) -> None:
    ingest_path(ws, collection("med"))
    ws.settings.embed.shard_size = 100
    record = resolve_model(ws, "lsa")
    run = open_run(ws, record, chunking_for(ws, record))
    assert run is not None and run.n_shards == 11
    shards = [read_shard(ws, run, n) for n in range(11)]
    assert [len(s) for s in shards] == [100] * 10 + [33]
    assert shard_sizes(ws, run) == [100] * 10 + [33]
    assert len({d for shard in shards for d, _ in shard}) == 1033  # every live document, once
    assert pq.ParquetFile(io.BytesIO(ws.lake.get(run.plan_key))).num_row_groups == 11
    # a plan of an unfinished run from before: one row group, read whole and filtered
    whole = pq.read_table(io.BytesIO(ws.lake.get(run.plan_key)))
    buf = io.BytesIO()
    pq.write_table(whole, buf, row_group_size=len(whole) + 1)
    before = replace(run, plan_key=run.plan_key.replace("plan.parquet", "old-plan.parquet"))
    ws.lake.put(before.plan_key, buf.getvalue())
    assert pq.ParquetFile(io.BytesIO(ws.lake.get(before.plan_key))).num_row_groups == 1
    assert [read_shard(ws, before, n) for n in range(11)] == shards
    assert shard_sizes(ws, before) == [100] * 10 + [33]


def test_a_worker_process_that_fails_stops_the_run_with_its_error(ws: Workspace) -> None:
    ingest_path(ws, collection("med"))
    ws.settings.embed.shard_size = 100
    ws.settings.embed.processes = 2
    record = resolve_model(ws, "lsa")
    encoder = artifacts.load(ws, record)  # this process has the model; the workers cannot load it
    shutil.rmtree(ws.settings.workspace / ".cache" / "models", ignore_errors=True)
    for obj in list(ws.lake.list(record.prefix)):
        ws.lake.delete(obj.key)
    with pytest.raises(InputError, match=f"{record.content_hash}: the model folder is empty"):
        embed(ws, record, encoder)
    assert ws.catalog.registry.count_current(record.id, "") == (0, 0)  # no shard recorded


def test_search_input_errors(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="embedlake index"):
        Searcher(ws)
    ingest_path(
        ws,
        write_jsonl(
            tmp_path / "d.jsonl",
            [{"_id": str(i), "text": f"doc number {i} about topic {i % 3}"} for i in range(20)],
        ),
    )
    record, _ = _embed(ws)
    build_index(ws, record)
    searcher = Searcher(ws)
    for k in (0, 1001):
        with pytest.raises(InputError, match="k must be"):
            searcher.search("topic", k)
    with pytest.raises(InputError, match="empty"):
        searcher.search("   ", 3)


def test_index_without_vectors_is_refused(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, collection("med"))
    record = resolve_model(ws, "lsa")
    with pytest.raises(NotFound, match="embedlake embed"):
        build_index(ws, record)


def test_vectors_of_two_models_never_mix(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, collection("med"))
    first, _ = _embed(ws)
    ingest_path(ws, write_jsonl(tmp_path / "x.jsonl", [{"_id": "x", "text": "new words here"}]))
    from embedlake.models.resolve import fit_lsa

    second = fit_lsa(ws, name="lsa2")
    embed(ws, second, artifacts.load(ws, second))
    assert second.content_hash != first.content_hash
    # Point a document of model 1 at a shard written by model 2: reading must refuse it.
    shard = next(
        o.key for o in ws.lake.list(f"embeddings/lsa2/{second.version}") if "/shard-" in o.key
    )
    with ws.catalog.begin() as conn:
        conn.execute(
            update(embedded)
            .where(embedded.c.model_id == first.id, embedded.c.doc_id == "1")
            .values(shard_key=shard)
        )
    with pytest.raises(ModelMismatch, match="not written by model"):
        read_vectors(ws, first)


def test_warehouse_sees_current_documents(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, collection("med"))
    f = write_jsonl(tmp_path / "upd.jsonl", [{"_id": "1", "text": "rewritten"}])
    ingest_path(ws, f, source="med")  # same source: an update
    delete_document(ws, "2")
    _, rows = warehouse.query(ws, "select count(*) from documents")
    assert rows == [(ws.catalog.documents.count(),)] == [(1032,)]
    _, rows = warehouse.query(ws, "select text from documents where id = '1'")
    assert rows == [("rewritten",)]
    _embed(ws)
    _, rows = warehouse.query(ws, "select count(*), min(len(vector)) from vectors")
    assert rows == [(1032, 256)]
    with pytest.raises(InputError, match="SQL error"):
        warehouse.query(ws, "select nope from nowhere")


def test_warehouse_on_an_empty_workspace(ws: Workspace) -> None:
    _, rows = warehouse.query(ws, "select count(*) from documents")
    assert rows == [(0,)]
