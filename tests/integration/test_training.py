"""Training data: the collection's own splits, self-supervised spans, hard negatives and their guard,
and fine-tuning that keeps its best epoch on the dev queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedlake import Workspace
from embedlake.encoders.lsa import LsaEncoder
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import load_folder, split_copy
from embedlake.releases import gate
from embedlake.search.bm25 import Bm25
from embedlake.training.negatives import Mining, corpus_for, mine
from embedlake.training.pairs import SPAN_WORDS, from_spec

from ..conftest import collection


@pytest.fixture
def med(ws: Workspace, tmp_path: Path) -> Path:
    """med with a seeded 40% of its judged queries moved to train.tsv and 10% to dev.tsv."""
    folder = tmp_path / "split" / "med"
    split_copy(collection("med"), folder, train=0.4, dev=0.1, seed=1)
    ingest_path(ws, folder)
    return folder


def test_the_collection_splits_decide_what_trains_chooses_and_is_gated_on(
    ws: Workspace, med: Path
) -> None:
    pairs = from_spec(ws, f"qrels:{med}", seed=5)
    info = pairs.info
    train, dev, test = (load_folder(med, split) for split in ("train", "dev", "test"))
    assert info["split"] == "collection" and info["dataset"] == "med"
    assert info["train_queries"] == sorted(train.queries)
    assert info["dev_queries"] == sorted(dev.queries) and pairs.dev is not None
    assert info["heldout_queries"] == sorted(test.queries)
    assert set(pairs.anchors) == set(train.queries.values())  # every pair from train.tsv
    assert not set(pairs.anchors) & set(test.queries.values())  # no test query trains
    # the seed does not change a collection's own split
    assert from_spec(ws, f"qrels:{med}", seed=6).info["train_queries"] == info["train_queries"]
    # the gate evaluates on every test query: what registered is test.tsv, nothing removed
    [gated] = gate.gate_datasets(ws, {"med": info["train_queries"] + info["dev_queries"]})
    assert sorted(gated.queries) == sorted(test.queries)


def test_a_collection_without_a_train_split_falls_back_to_a_seeded_one(ws: Workspace) -> None:
    ingest_path(ws, collection("med"))
    pairs = from_spec(ws, f"qrels:{collection('med')}", seed=3)
    info = pairs.info
    assert info["split"] == "seeded"
    train, dev, held = (set(info[k]) for k in ("train_queries", "dev_queries", "heldout_queries"))
    assert len(held) == 15 and len(train) + len(dev) == 15 and len(dev) == 3
    assert not (train & dev or train & held or dev & held)
    # a model's train and dev queries never reach the gate
    [gated] = gate.gate_datasets(ws, {"med": sorted(train | dev)})
    assert set(gated.queries) == held


def test_self_spans_are_cut_out_of_their_document(ws: Workspace) -> None:
    ingest_path(ws, collection("med"))
    pairs = from_spec(ws, "self:span", seed=2)
    docs = ws.catalog.documents.get_many(pairs.positive_ids)
    assert len(pairs) > 900 and pairs.info["pairs"] == "self:span"
    for anchor, positive, doc_id in zip(
        pairs.anchors, pairs.positives, pairs.positive_ids, strict=True
    ):
        assert anchor in docs[doc_id].text and anchor not in positive
        assert SPAN_WORDS[0] <= len(anchor.split()) <= SPAN_WORDS[1]
    assert from_spec(ws, "self:span", seed=2).info["pairs_hash"] == pairs.info["pairs_hash"]


def test_hard_negatives_are_guarded_and_come_from_both_sources(ws: Workspace, med: Path) -> None:
    pairs = from_spec(ws, f"qrels:{med}", seed=0)
    live = [(d.id, d.full_text) for d in ws.catalog.documents.iter_live()]
    wanted = {i: t for i, t in live if i in set(pairs.positive_ids)}
    corpus = corpus_for(wanted, iter(live), 600, seed=0)
    assert len(corpus) == 600 and set(wanted) <= set(corpus)
    encoder = LsaEncoder.fit(list(corpus.values()), n_components=64)
    mining = Mining(count=2, first=3, last=30, margin=0.05)
    negatives, info = mine(pairs, corpus, encoder, mining)
    assert len(negatives) == len(pairs) and all(len(n) == 2 for n in negatives)
    assert info["mined"] + info["random"] == 2 * len(pairs) and info["guarded"] > 0
    assert info["unguarded"] == 0
    by_text = {t: i for i, t in corpus.items()}
    ids = sorted(corpus)
    bm25_top = {
        a: {d for d, _ in hits[:3]}
        for a, hits in zip(
            sorted(set(pairs.anchors)),
            Bm25(ids, [corpus[i] for i in ids], stem=True).search(sorted(set(pairs.anchors)), 3),
            strict=True,
        )
    }
    positives = encoder.encode(pairs.positives)
    for i, (anchor, row) in enumerate(zip(pairs.anchors, negatives, strict=True)):
        q = encoder.encode([anchor])[0]
        for text in row:
            doc = by_text[text]
            assert doc not in pairs.judged[anchor]  # never a judged answer
            # the guard: never within the margin of the pair's own positive
            assert float(q @ encoder.encode([text])[0]) < 0.95 * float(q @ positives[i]) + 1e-6
    mined_only, mined_info = mine(pairs, corpus, encoder, Mining(count=1, first=3, last=400))
    assert mined_info["random"] < 0.05 * len(pairs)  # a deep window: nearly all were mined
    # the top ranks are skipped (only a random top-up could land there)
    in_top = sum(
        by_text[t] in bm25_top[a] for a, [t] in zip(pairs.anchors, mined_only, strict=True)
    )
    assert in_top <= mined_info["random"]
    # each source alone gives other negatives; the same seed gives the same ones
    only_bm25, _ = mine(pairs, corpus, encoder, Mining(count=2, sources=("bm25",)))
    only_live, _ = mine(pairs, corpus, encoder, Mining(count=2, sources=("live",)))
    assert only_bm25 != only_live
    assert mine(pairs, corpus, encoder, mining)[0] == negatives
    with pytest.raises(Exception, match="first < last"):
        Mining(first=5, last=5)


def test_fine_tuning_keeps_its_best_epoch_on_the_dev_queries(ws: Workspace, med: Path) -> None:
    from embedlake.encoders.sentence_transformers import builtin_path
    from embedlake.training.finetune import DevSet, Recipe, finetune

    pairs = from_spec(ws, f"qrels:{med}", seed=0)
    keep = list(range(0, len(pairs), max(1, len(pairs) // 24)))[:24]  # a small, fast run
    pairs.anchors = [pairs.anchors[i] for i in keep]
    pairs.positives = [pairs.positives[i] for i in keep]
    assert pairs.dev is not None
    judged = {d for rel in pairs.dev.qrels.values() for d in rel}
    docs = {d.id: d.full_text for d in ws.catalog.documents.iter_live()}
    corpus = corpus_for({d: docs[d] for d in judged if d in docs}, iter(docs.items()), 120, 0)
    out = ws.settings.workspace / "ft"
    params = finetune(
        builtin_path(),
        pairs,
        out,
        recipe=Recipe(epochs=2, batch_size=8, learning_rate=5e-5),
        negatives=[[pairs.positives[(i + 7) % len(pairs)]] for i in range(len(pairs))],
        dev=DevSet(pairs.dev, corpus),
        max_seq_length=64,
        device="cpu",
    )
    dev = params["dev"]
    assert params["hard_negatives"] == 1 and params["steps"] == 2 * 3
    assert len(dev["ndcg@10_per_epoch"]) == 2 and 0 < dev["ndcg@10_before"] <= 1
    assert dev["best_epoch"] == 1 + int(np.argmax(dev["ndcg@10_per_epoch"]))
    assert (out / "model" / "config.json").is_file()


def test_a_broken_train_split_is_refused_before_anything_is_ingested(
    ws: Workspace, tmp_path: Path
) -> None:
    from embedlake.errors import InputError

    folder = tmp_path / "split" / "med"
    split_copy(collection("med"), folder, train=0.4, seed=1)
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\t2\n")
    with pytest.raises(InputError, match=r"train\.tsv: med qrels line 2: expected 3"):
        ingest_path(ws, folder)
    assert ws.catalog.documents.count() == 0
    assert ws.catalog.benchmarks.list_datasets() == []


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ("mnrl", "MultipleNegativesRankingLoss"),
        ("cached_mnrl", "CachedMultipleNegativesRankingLoss"),
        ("gist", "GISTEmbedLoss"),
    ],
)
def test_each_loss_setting_trains_with_its_loss(loss: str, expected: str) -> None:
    from sentence_transformers import SentenceTransformer

    from embedlake.encoders.sentence_transformers import builtin_path
    from embedlake.training.finetune import Recipe, make_loss

    model = SentenceTransformer(str(builtin_path()), device="cpu", local_files_only=True)
    made = make_loss(Recipe(loss=loss), model, builtin_path(), "cpu")  # type: ignore[arg-type]
    assert type(made).__name__ == expected
