"""A release's reducer and map stages over vectors read a batch at a time (``releases.reduce``):
PCA fitted on a sample, every reduced vector written, one map point per document."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from embedlake import Workspace
from embedlake.embeddings.batch import chunking_for, embed
from embedlake.embeddings.vectors import read_vectors
from embedlake.ingest import delete_document, ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.reduce.pca import PcaReducer
from embedlake.reduce.projection import Projection
from embedlake.reduce.store import read_reducer
from embedlake.releases.reduce import REDUCED, map_release, reduce_release
from tests.conftest import collection


def test_the_reducer_fits_a_sample_and_reduces_every_vector_in_batches(ws: Workspace) -> None:
    ws.settings.embed.shard_size = 300
    ws.settings.index.build_memory = 1  # batches of 128 LSA vectors
    ws.settings.reduce.fit_sample, ws.settings.reduce.components = 400, 20
    ws.settings.map.method = "pca"
    ingest_path(ws, collection("med"))
    model = resolve_model(ws, "lsa")
    embed(ws, model, artifacts.load(ws, model))
    delete_document(ws, "3")
    release = ws.catalog.releases.create("r1", model.id, "test")
    ws.catalog.releases.merge_report("r1", chunking=chunking_for(ws, model).describe())

    reduce_release(ws, "r1")
    report = ws.catalog.releases.get("r1").report["reducer"]
    assert (report["fitted_on"], report["vectors"]) == (400, 1032)
    assert 0 < report["recall@10_vs_full"] <= 1 and report["dims"] == 20
    reducer = read_reducer(ws, release)
    table = pq.read_table(io.BytesIO(ws.lake.get(f"{release.prefix}/{REDUCED}")))
    ids, vectors = read_vectors(ws, model)
    assert sorted(table.column("id").to_pylist()) == ids and "3" not in ids
    stored = dict(
        zip(table.column("id").to_pylist(), table.column("vector").to_pylist(), strict=True)
    )
    for row in (0, 500, len(ids) - 1):
        expected = reducer.transform(vectors[row : row + 1])[0]
        assert np.allclose(stored[ids[row]], expected, atol=1e-5)
    # a sample of 400 finds about the axes all 1,032 give: the variance its 20 axes keep against
    # what those of all the vectors keep (0.86 measured; 20 random axes keep 0.44)
    whole = PcaReducer.fit(vectors, components=20)
    centred = vectors - vectors.mean(axis=0)
    kept = [np.linalg.norm(centred @ r.components.T) ** 2 for r in (reducer, whole)]
    assert kept[0] >= 0.8 * kept[1]

    map_release(ws, "r1")
    fitted = Projection.load(ws.lake, release.prefix)
    assert sorted(fitted.ids) == ids and fitted.coords.shape == (1032, 2)
    assert ws.catalog.releases.get("r1").report["map"]["n"] == 1032
