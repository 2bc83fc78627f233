from __future__ import annotations

import math

import pytest

from embedlake.errors import InputError
from embedlake.evaluate import metrics
from embedlake.ingest.datasets import parse


def test_ndcg_and_mrr_match_hand_computation() -> None:
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"x": 3.0, "a": 2.0, "b": 1.0}}
    m = metrics.mean(run, qrels)
    dcg = (2**2 - 1) / math.log2(3) + (2**1 - 1) / math.log2(4)
    ideal = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    # trec_eval's ndcg uses gain = grade (not 2^grade - 1)
    dcg_lin, ideal_lin = 2 / math.log2(3) + 1 / math.log2(4), 2 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg_lin / ideal_lin, abs=1e-4)
    assert m["ndcg@10"] != pytest.approx(dcg / ideal, abs=1e-4)
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["recall@100"] == pytest.approx(1.0)


def test_mrr_is_cut_at_ten_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"rel": 1}, "q2": {"rel": 1}}
    run = {"q1": {f"d{i}": 100.0 - i for i in range(10)} | {"rel": 1.0}}
    per = metrics.per_query(run, qrels)
    assert per["mrr@10"] == {"q1": 0.0, "q2": 0.0}
    assert per["recall@100"]["q1"] == 1.0 and per["recall@100"]["q2"] == 0.0


def test_identical_query_and_doc_ids_are_kept() -> None:
    """SMART collections share id spaces; BEIR's ignore_identical_ids would drop this pair."""
    m = metrics.mean({"1": {"1": 1.0}}, {"1": {"1": 1}})
    assert m["ndcg@10"] == pytest.approx(1.0)


def test_ann_recall() -> None:
    assert metrics.ann_recall([["a", "b"]], [["a", "c"]], k=2) == 0.5
    assert metrics.ann_recall([], []) == 0.0


def test_dataset_keeps_only_queries_with_relevant_judgments() -> None:
    ds = parse(
        "t",
        b'{"_id": "1", "text": "q one"}\n{"_id": "2", "text": "q two"}\n',
        b"query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t0\n",
        id_prefix="p:",
    )
    assert ds.queries == {"1": "q one"}
    assert ds.qrels == {"1": {"p:d1": 1}}


@pytest.mark.parametrize(
    ("queries", "qrels", "needle"),
    [
        (b'{"_id": "1", "text": "q"}', b"1\td1\n", "3 tab-separated"),
        (b'{"_id": "1", "text": "q"}', b"1\td1\thigh\n", "not a number"),
        (b'{"id": "1"}', b"1\td1\t1\n", "queries line 1"),
        (b'{"_id": "1", "text": "q"}', b"1\td1\t0\n", "no query has a relevant judgment"),
    ],
)
def test_bad_datasets_name_the_problem(queries: bytes, qrels: bytes, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse("t", queries, qrels)
