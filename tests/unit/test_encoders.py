from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedlake import Workspace
from embedlake.encoders import load_folder, normalise
from embedlake.encoders.hub import offline
from embedlake.encoders.lsa import LsaEncoder
from embedlake.encoders.sentence_transformers import builtin_path
from embedlake.errors import ConfigError, InputError
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from tests.conftest import collection

TEXTS = [
    "the wing in a slipstream",
    "heat transfer in slabs",
    "boundary layer flow",
    "supersonic wing lift",
    "heat conduction in walls",
]


def test_lsa_vectors_are_unit_length_and_survive_save_and_load(tmp_path: Path) -> None:
    enc = LsaEncoder.fit(TEXTS * 3, n_components=3)
    vecs = enc.encode(TEXTS)
    assert vecs.dtype == np.float32 and vecs.shape == (5, enc.dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    enc.save(tmp_path)
    loaded = load_folder(tmp_path, {"kind": "lsa"})
    assert np.allclose(loaded.encode(TEXTS), vecs, atol=1e-6)


def test_lsa_counts_terms_as_scikit_learn_does(tmp_path: Path) -> None:
    """LSA counts a text's terms itself (by C code, not scikit-learn's loop over every token):
    the vectors are bit for bit those of the vectorizer's own transform, on real documents and
    on texts of stop words only, mixed case, accents, digits and punctuation."""
    lines = (collection("med") / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [f"{row['title']} {row['text']}" for row in map(json.loads, lines)]
    odd = ["", "the and of", "Heat HEAT heat-transfer 2019 x1 a", "Ärzte über naïve café", "wing!!"]
    # ASCII split by bytes: underscores, control characters, a word of one letter, and a
    # non-ASCII sign that lower-cases to ASCII (the Kelvin sign: "K" → "k")
    odd += ["blood_flow\tcell\x0bcells\x1fheart x", "\u212aidney KIDNEY", "a b c d e f"]
    enc = LsaEncoder.fit(texts[:600], n_components=32)
    enc.save(tmp_path)
    for model in (enc, load_folder(tmp_path, {"kind": "lsa"})):
        assert isinstance(model, LsaEncoder)
        mine = model.encode(texts + odd)
        theirs = normalise(np.asarray(model.vectorizer.transform(texts + odd) @ enc.components.T))
        assert np.array_equal(mine, theirs)
    assert not enc.encode(odd[:2]).any()  # nothing known: zero vectors, as before


def test_lsa_refuses_a_corpus_it_cannot_fit() -> None:
    with pytest.raises(InputError, match="at least 3"):
        LsaEncoder.fit(["one"])
    with pytest.raises(InputError, match="cannot fit"):
        LsaEncoder.fit(["the a an", "of the", "and or"])


def test_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_folder(Path("."), {"kind": "word2vec"})


def test_fit_lsa_registers_an_immutable_content_hashed_model(ws: Workspace) -> None:
    ingest_path(ws, collection("med"))
    record = resolve_model(ws, "lsa")
    assert record.version == record.content_hash[:12]
    manifest = json.loads(ws.lake.get(f"{record.prefix}/manifest.json"))
    assert manifest["kind"] == "lsa" and manifest["dim"] == record.dim == 256
    assert resolve_model(ws, "lsa").id == record.id  # reuse, no refit
    assert resolve_model(ws, "lsa", refit=True).id == record.id  # same corpus, same model


def test_a_model_embedlake_registers_is_registered_before_its_manifest_arrives(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's register-model function reacts to a manifest's arrival, and builds a release
    of a model it finds unregistered. The default model (and a serving form) is registered by
    embedlake itself: registered first, it is never taken for a new arrival, however fast the
    runtime reads the event. A trained model's manifest arrives unregistered: the runtime's."""
    ingest_path(ws, collection("med"))
    registered_at_arrival: dict[str, bool] = {}
    put = ws.lake.put

    def watching(key: str, data: bytes) -> object:
        if key.endswith("/manifest.json"):
            manifest = json.loads(data)
            ref = f"{manifest['name']}@{manifest['version']}"
            registered_at_arrival[ref] = any(
                m.ref == ref for m in ws.catalog.registry.list_models()
            )
        return put(key, data)

    monkeypatch.setattr(ws.lake, "put", watching)
    record = resolve_model(ws, "lsa")
    assert registered_at_arrival == {record.ref: True}
    assert artifacts.register_from_lake(ws, record.prefix) == (record, False)
    trained = _lsa_in_lake(ws, "trained")
    assert registered_at_arrival[f"trained@{trained.rsplit('/', 1)[1]}"] is False


def test_a_tampered_artifact_is_refused(ws: Workspace, tmp_path: Path) -> None:
    ingest_path(ws, collection("med"))
    record = resolve_model(ws, "lsa")
    artifacts._loaded.clear()
    local = ws.lake.local_path(f"{record.prefix}/idf.npy")
    assert local is not None
    idf = np.load(local)
    np.save(local, idf * 2)
    with pytest.raises(InputError, match="content hash mismatch"):
        artifacts.load(ws, record)


def test_broken_model_folders_are_refused_and_register_nothing(
    ws: Workspace, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        artifacts.publish_folder(ws, empty, name="x", kind="lsa")
    half = tmp_path / "half"
    half.mkdir()
    (half / "vocabulary.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="not a loadable LSA model"):
        artifacts.publish_folder(ws, half, name="x", kind="lsa")
    fake_st = tmp_path / "fake-st"
    fake_st.mkdir()
    (fake_st / "modules.json").write_text("[]", encoding="utf-8")
    with pytest.raises(InputError):
        resolve_model(ws, str(fake_st))
    assert ws.catalog.registry.list_models() == []
    assert list(ws.lake.list("models")) == []


def test_minilm_from_its_package_offline(ws: Workspace) -> None:
    record = resolve_model(ws, "minilm")
    assert (record.kind, record.dim) == ("sentence-transformers", 384)
    enc = artifacts.load_encoder(ws, record)
    vecs = enc.encode(TEXTS[:2])
    assert vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = enc.encode(
        [
            "heat transfer in slabs",
            "conduction of heat through walls",
            "a wing in a propeller slipstream",
        ]
    )
    assert sims[0] @ sims[1] > sims[0] @ sims[2]  # it is a real semantic model


def test_the_hub_is_switched_off_unless_the_environment_decided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"  # a user's choice stands


def test_a_local_sentence_transformers_folder_registers_under_its_name(
    ws: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "my-model"
    shutil.copytree(builtin_path(), folder)
    record = resolve_model(ws, str(folder))
    assert record.name == "my-model" and record.dim == 384
    assert ws.lake.exists(f"{record.prefix}/model.safetensors")


def _lsa_in_lake(ws: Workspace, name: str) -> str:
    from embedlake.training.train import train

    prefix, _ = train(ws, name=name, kind="lsa", components=8)
    return prefix


@pytest.mark.parametrize("damage", ["wrong-dim", "tampered", "unloadable", "renamed", "no-json"])
def test_a_broken_model_folder_in_the_lake_is_refused(ws: Workspace, damage: str) -> None:
    ingest_path(ws, collection("med"))
    prefix = _lsa_in_lake(ws, "m")
    manifest = json.loads(ws.lake.get(f"{prefix}/manifest.json"))
    artifacts._loaded.clear()
    if damage == "wrong-dim":
        manifest["dim"] = 9
        needle = "produces 8-dimensional vectors, the manifest says 9"
    elif damage == "tampered":
        ws.lake.put(f"{prefix}/idf.npy", ws.lake.get(f"{prefix}/idf.npy")[:-4] + b"\0\0\0\0")
        needle = "content hash mismatch"
    elif damage == "unloadable":
        ws.lake.put(f"{prefix}/components.npy", b"not numpy")
        files = dict(manifest["files"])
        import hashlib

        files["components.npy"] = hashlib.sha256(b"not numpy").hexdigest()
        manifest["files"] = files
        manifest["content_hash"] = hashlib.sha256(
            json.dumps(files, sort_keys=True).encode()
        ).hexdigest()
        needle = "not a loadable LSA model"
    elif damage == "renamed":
        manifest["name"] = "other"
        needle = "manifest names other@"
    if damage == "no-json":
        ws.lake.put(f"{prefix}/manifest.json", b"{not json")
        needle = "not valid JSON"
    else:
        ws.lake.put(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(InputError, match=needle):
        artifacts.register_from_lake(ws, prefix)
    assert ws.catalog.registry.list_models() == []


def test_a_good_model_folder_registers_once(ws: Workspace) -> None:
    ingest_path(ws, collection("med"))
    prefix = _lsa_in_lake(ws, "m")
    record, new = artifacts.register_from_lake(ws, prefix)
    assert new and record.dim == 8 and record.prefix == prefix
    again, new = artifacts.register_from_lake(ws, prefix)
    assert not new and again.id == record.id


@pytest.mark.parametrize(
    "asked, expected", [("1", 1), ("", None), ("0", None), ("two", None), ("64", None)]
)
def test_onnx_and_openvino_compute_on_the_threads_omp_num_threads_allows(
    monkeypatch: pytest.MonkeyPatch, asked: str, expected: int | None
) -> None:
    """As torch and faiss do: a process told to compute on one thread (a Ray actor of one CPU, a
    test worker beside others) does so in every runtime; unset, zero, not a number or more than the
    cores this process may use, the cores."""
    from embedlake import machine
    from embedlake.encoders.onnx import session_options
    from embedlake.encoders.openvino import compile_config

    monkeypatch.setenv("OMP_NUM_THREADS", asked)
    want = expected or machine.cores()
    assert machine.threads() == want
    assert session_options().intra_op_num_threads == want
    assert compile_config("fp32")["INFERENCE_NUM_THREADS"] == want
    assert session_options(threads=3).intra_op_num_threads == 3  # an explicit count wins
