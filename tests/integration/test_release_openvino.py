"""A release can be served in an OpenVINO form end to end: chosen by the form rule on the release's
own gate dataset, registered as ``minilm.<form>``, its corpus and queries encoded by it, and a
node without torch answering search with it. Small samples (a slice of Medline, two timed rounds):
the claim is the path, not the measurement (bench/inference.py measures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedlake.cli.releases import build_now as _build
from embedlake.embeddings.vectors import read_vectors
from embedlake.encoders import openvino as openvino_kind
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.workspace import Workspace
from tests.conftest import (
    collection,
    passage_texts,
    run_without_torch,
    top_documents,
    write_jsonl,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not openvino_kind.installed(), reason="needs the openvino extra"),
]
# the fastest OpenVINO form this CPU has: bf16 where it is native, else the int8 one
FORM = "openvino-bf16" if openvino_kind.native_bf16() else "openvino-int8"
ENVIRON = {
    "EMBEDLAKE_SERVING__FORMS": json.dumps([FORM]),
    "EMBEDLAKE_SERVING__TORCH_FREE": "true",  # the form serves even where it is not faster
    "EMBEDLAKE_SERVING__EVAL_DOCUMENTS": "60",
    "EMBEDLAKE_SERVING__EVAL_QUERIES": "10",
    "EMBEDLAKE_SERVING__SPEED_DOCUMENTS": "8",
    "EMBEDLAKE_SERVING__SPEED_ROUNDS": "2",
    "EMBEDLAKE_MAP__METHOD": "pca",
    "EMBEDLAKE_INDEX__ENGINE": "exact",
}


def _medline_slice(folder: Path, queries: int = 10, others: int = 60) -> Path:
    """A BEIR folder of Medline's first ``queries`` queries, their judged documents and the first
    ``others`` documents besides (a gate dataset small enough for a fast build)."""
    source = collection("med")
    qrels = (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in qrels[1:]]
    with (source / "queries.jsonl").open(encoding="utf-8") as f:
        kept = [json.loads(line) for _, line in zip(range(queries), f, strict=False)]
    ids = {q["_id"] for q in kept}
    judged = [r for r in rows if r[0] in ids]
    with (source / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    wanted = {r[1] for r in judged} | {d["_id"] for d in docs[:others]}
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "queries.jsonl", kept)
    write_jsonl(folder / "corpus.jsonl", [d for d in docs if d["_id"] in wanted])
    lines = [qrels[0], *("\t".join(r) for r in judged)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    root = tmp_path_factory.mktemp("openvino")
    data = _medline_slice(root / "med")
    with Workspace.init(root / "ws", environ=ENVIRON) as ws:
        ingest_path(ws, data, source="med")
        built = _build(ws, resolve_model(ws, "minilm").ref, "openvino test", publish=True)
        yield ws, built["release"]


def test_the_release_is_served_in_the_openvino_form(released: tuple[Workspace, str]) -> None:
    ws, release_id = released
    release = ws.catalog.releases.get(release_id)
    report = release.report["serving_form"]
    assert report["form"] == FORM, report
    row = report["forms"][FORM]
    assert row["passed"] is True and row["cosine_mean"] >= 0.985
    assert "med" in row["quality"] and len(report["timing"]["cpu_s"][FORM]) == 2
    model = ws.catalog.registry.model_by_id(release.model_id)
    assert (model.name, model.kind, model.manifest["form"]) == (f"minilm.{FORM}", "openvino", FORM)
    assert model.manifest["serving"]["openvino"]["inference_precision_hint"] in ("bf16", "f32")
    # the corpus vectors are the form's: encoded again, alone or in other batches, the same
    encoder = artifacts.load(ws, model)
    ids, vectors = read_vectors(ws, model)
    some = passage_texts(ws, ids[:24])
    cosine = np.einsum("ij,ij->i", encoder.encode(some, batch_size=5), vectors[:24])
    assert cosine.min() >= 0.9999


def test_a_node_without_torch_searches_with_the_openvino_form(
    released: tuple[Workspace, str],
) -> None:
    ws, release_id = released
    model = ws.catalog.registry.model_by_id(ws.catalog.releases.get(release_id).model_id)
    key, _ = ws.catalog.keys.create(["search"], "light node")
    script = """
        import json
        from pathlib import Path
        from fastapi.testclient import TestClient
        from embedlake.api import create_app
        from embedlake.workspace import Workspace

        folder, key, query = sys.argv[1:4]
        with Workspace.open(Path(folder)) as ws, TestClient(create_app(ws, follow=False)) as c:
            got = c.post("/v1/search", json={"query": query, "k": 5},
                         headers={"authorization": f"Bearer {key}"})
            heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers"})
            print(json.dumps({"status": got.status_code, "body": got.json(), "heavy": heavy}))
        """
    query = "the effect of hypoxia on lung tissue"
    out = run_without_torch(script, str(ws.settings.workspace), key, query)
    assert out["status"] == 200, out
    assert out["heavy"] == [] and out["body"]["release"] == release_id
    encoder = artifacts.load(ws, model)
    ids, vectors = read_vectors(ws, model)
    expected = top_documents(ids, vectors @ encoder.encode([query])[0], 5)
    assert [hit["id"] for hit in out["body"]["results"]] == expected
