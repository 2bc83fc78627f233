"""A release of a sentence-transformers model is served in its fastest form that keeps quality:
the forms are measured on the release's own gate dataset, the choice and the numbers go into the
report, the corpus and the queries are encoded by the chosen form, and a node without torch serves
search with it (serving.torch_free: the release is served by a torch-free form or not published)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedlake.cli.releases import build_now as _build
from embedlake.embeddings.vectors import read_vectors
from embedlake.encoders.sentence_transformers import KIND, builtin_path
from embedlake.errors import ConfigError, InputError
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.releases.form_choice import choose
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import (
    documents_of,
    passage_texts,
    run_without_torch,
    small_collection,
    top_documents,
    write_jsonl,
)

pytestmark = pytest.mark.slow
ENVIRON = {
    "EMBEDLAKE_SERVING__FORMS": '["onnx-fp32", "onnx-int8"]',
    "EMBEDLAKE_SERVING__TORCH_FREE": "true",
    "EMBEDLAKE_MAP__METHOD": "pca",
    "EMBEDLAKE_INDEX__ENGINE": "exact",
    # every claim here holds at any window; 128 word pieces halve every encoding's time
    "EMBEDLAKE_EMBED__MAX_SEQ_LENGTH": "128",
}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    root = tmp_path_factory.mktemp("forms")
    # med's 30 queries, 8 judged documents of each and others to 340 (the gate samples 300 of
    # them): a third of the collection, so a third of the corpus's encoding; registers the cut
    # as the gate dataset "med"
    med = small_collection(root / "med", queries=30, documents=340, judged_per_query=8)
    with Workspace.init(root / "ws", environ=ENVIRON) as ws:
        ingest_path(ws, med)
        built = _build(ws, resolve_model(ws, "minilm").ref, "forms test", publish=True)
        yield ws, built["release"]


def test_the_release_is_built_with_the_fastest_form_that_keeps_ndcg(
    released: tuple[Workspace, str],
) -> None:
    ws, release_id = released
    release = ws.catalog.releases.get(release_id)
    report = release.report["serving_form"]
    rows = report["forms"]
    assert set(rows) == {"model", "onnx-fp32", "onnx-int8"}
    med = report["evaluation"]["datasets"]["med"]
    assert med["of_queries"] == 30 and 25 <= med["queries"] <= 30 and med["documents"] == 300
    # timed in interleaved rounds on the same documents; the spread of the per-round ratios is
    # reported with each form's speed-up
    timing = report["timing"]
    assert timing["rounds"] == 5 and timing["documents"] == 16
    assert all(len(timing["wall_s"][n]) == 5 for n in rows)
    for name in ("onnx-fp32", "onnx-int8"):
        row = rows[name]
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
    # torch_free: judged fastest first until one passes; the quality of a judged form is paired
    # per query against the model's, and it passed when neither significantly worse nor beyond
    # the loss policy
    judged = [n for n in ("onnx-fp32", "onnx-int8") if "passed" in rows[n]]
    assert judged, rows
    for name in judged:
        quality = rows[name]["quality"]["med"]
        reference = quality["ndcg@10_model"]
        loss = (reference - quality["ndcg@10"]) / reference
        assert rows[name]["ndcg_loss"]["med"] == pytest.approx(loss, abs=1e-4)
        assert rows[name]["passed"] == (loss <= 0.02 and quality["p_worse"] >= 0.05)
    if "onnx-fp32" in judged:
        assert rows["onnx-fp32"]["cosine_min"] >= 0.999  # the same model, another runtime
    assert report["rule"].startswith("torch-free forms only")
    passing = [n for n in judged if rows[n]["passed"]]
    assert report["form"] in passing
    assert set(report["seconds"]) == {"make", "speed", "quality", "total"}
    model = ws.catalog.registry.model_by_id(release.model_id)
    assert model.name == f"minilm.{report['form']}" and model.manifest["form_of"] == report["of"]
    assert model.kind == "onnx"
    assert release.status == "published" and ws.catalog.releases.alias("production") == release_id


def test_corpus_and_queries_come_from_the_chosen_form(released: tuple[Workspace, str]) -> None:
    ws, release_id = released
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    encoder = artifacts.load(ws, model)
    ids, vectors = read_vectors(ws, model)
    assert len(documents_of(ids)) == 340
    some = passage_texts(ws, ids[:64])
    again = encoder.encode(some)
    # every form's vectors are independent of their batch (int8 is quantised statically): the
    # same text gets the same vector, in the release's shards and encoded again here
    cosine = np.einsum("ij,ij->i", again, vectors[:64])
    assert cosine.min() >= 0.9999
    # and they are the form's, not the model's: the source model's vectors are further away
    source = (
        ws.catalog.registry.model(model.manifest["form_of"])
        if "form_of" in model.manifest
        else model
    )
    if source.id != model.id and model.manifest["form"] == "onnx-int8":
        theirs = artifacts.load(ws, source).encode(some)
        assert np.einsum("ij,ij->i", theirs, vectors[:64]).mean() < cosine.mean()
    # (onnx-fp32, which wins where int8's speed cannot be told from it, gives the model's own
    # vectors to 1e-6: nothing to tell apart)


def test_a_node_without_torch_serves_search_with_the_form(
    released: tuple[Workspace, str],
) -> None:
    ws, release_id = released
    model = ws.catalog.registry.model_by_id(ws.catalog.releases.get(release_id).model_id)
    assert model.kind == "onnx"
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
            # the model itself (torch) cannot serve here: refused, naming the extra
            from embedlake.models import artifacts
            from embedlake.errors import ConfigError
            try:
                artifacts.load(ws, ws.catalog.registry.model(sys.argv[4]))
                refused = ""
            except ConfigError as exc:
                refused = str(exc)
            print(json.dumps({"status": got.status_code, "body": got.json(), "heavy": heavy,
                              "refused": refused}))
        """
    query = "the effect of hypoxia on lung tissue"
    out = run_without_torch(
        script, str(ws.settings.workspace), key, query, model.manifest["form_of"]
    )
    assert out["status"] == 200, out
    assert out["heavy"] == []
    assert "pip install 'embedlake[models]'" in out["refused"]
    assert out["body"]["release"] == release_id
    # the same hits as searching the release's vectors with the form's query vector here
    encoder = artifacts.load(ws, model)
    ids, vectors = read_vectors(ws, model)
    expected = top_documents(ids, vectors @ encoder.encode([query])[0], 5)
    assert [hit["id"] for hit in out["body"]["results"]] == expected


def test_choosing_again_reuses_the_registered_form(released: tuple[Workspace, str]) -> None:
    """A retried build (or the next release of the same model) makes and measures the forms
    again, but an export need not be byte-identical: the registered form is kept, not replaced."""
    ws, release_id = released
    model = ws.catalog.registry.model_by_id(ws.catalog.releases.get(release_id).model_id)
    # the claim is about what is registered, not the measurement: small samples, and a policy
    # that a few queries' noise cannot fail, so the same form is chosen again
    small = {
        **ENVIRON,
        "EMBEDLAKE_SERVING__FORMS": json.dumps([model.manifest["form"]]),
        "EMBEDLAKE_SERVING__EVAL_DOCUMENTS": "60",
        "EMBEDLAKE_SERVING__EVAL_QUERIES": "10",
        "EMBEDLAKE_SERVING__SPEED_DOCUMENTS": "8",
        "EMBEDLAKE_SERVING__SPEED_ROUNDS": "2",
        "EMBEDLAKE_SERVING__MAX_NDCG_LOSS": "0.5",
        "EMBEDLAKE_SERVING__SIGNIFICANCE": "1e-9",
    }
    with Workspace.open(ws.settings.workspace, environ=small) as again_ws:
        again = choose(again_ws, model.manifest["form_of"], {})
    assert again["model"] == model.ref
    assert [m.ref for m in ws.catalog.registry.list_models() if m.name == model.name] == [model.ref]


def test_torch_free_never_publishes_a_release_its_nodes_cannot_serve(tmp_path: Path) -> None:
    """serving.torch_free with no torch-free form to make: refused before any work; with forms
    made but none keeping quality (the static form: another model, no cosine to MiniLM's vectors
    and no gate dataset here): the build fails and the live release stays live."""
    kinds = [("laminar", "swept"), ("turbulent", "delta"), ("viscous", "thin")]
    rows = [
        {"_id": f"d{i}", "text": f"{kinds[i % 3][0]} flow over a {kinds[i % 3][1]} wing, case {i}"}
        for i in range(60)
    ]
    with Workspace.init(tmp_path / "ws", environ=ENVIRON) as ws:
        ingest_path(ws, write_jsonl(tmp_path / "wings.jsonl", rows), source="wings")
        prefix, _ = train(ws, name="lsa-live", kind="lsa", components=8)
        live = _build(ws, artifacts.register_from_lake(ws, prefix)[0].ref, "live", publish=True)
        assert ws.catalog.releases.alias("production") == live["release"]
        minilm = resolve_model(ws, "minilm").ref

    torch_only = {**ENVIRON, "EMBEDLAKE_SERVING__FORMS": '["torch-bf16"]'}
    with (
        Workspace.open(tmp_path / "ws", environ=torch_only) as ws,
        pytest.raises(ConfigError, match=r"serving\.torch_free: minilm@.* needs torch"),
    ):
        choose(ws, minilm, {})

    # a torch form registered already (by a build without torch_free) cannot serve either
    bf16 = tmp_path / "minilm-bf16"
    shutil.copytree(builtin_path(), bf16)
    (bf16 / "serving.json").write_text(json.dumps({"form": "torch-bf16", "precision": "bf16"}))
    with Workspace.open(tmp_path / "ws", environ=ENVIRON) as ws:
        form = artifacts.publish_folder(
            ws, bf16, name="minilm.torch-bf16", kind=KIND,
            extra={"form": "torch-bf16", "form_of": minilm, "precision": "bf16"},
        )  # fmt: skip
        with pytest.raises(ConfigError, match=r"is its torch-bf16 form: release the model it"):
            choose(ws, form.ref, {})

    static = {**ENVIRON, "EMBEDLAKE_SERVING__FORMS": '["static"]'}
    with Workspace.open(tmp_path / "ws", environ=static) as ws:
        with pytest.raises(InputError, match=r"no torch-free form of minilm@.* keeps its quality"):
            _build(ws, minilm, "static only", publish=True)
        assert [r.id for r in ws.catalog.releases.all()] == [live["release"]]
        assert ws.catalog.releases.alias("production") == live["release"]
