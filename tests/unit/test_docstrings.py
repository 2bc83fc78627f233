from __future__ import annotations

import json
from pathlib import Path

from embedlake.demo import docstrings
from embedlake.ingest.datasets import load_folder


def test_docstrings_corpus_is_a_consistent_beir_collection(tmp_path: Path) -> None:
    out = docstrings.build(tmp_path / "ds", max_documents=400, max_queries=50)
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == 400
    ids = {d["_id"] for d in corpus}
    assert len(ids) == 400
    labels = {d["labels"][0] for d in corpus}
    assert "stdlib" in labels and len(labels) >= 5  # labelled by package
    dataset = load_folder(out)
    assert len(dataset.queries) == 50
    for qid, rel in dataset.qrels.items():
        [doc] = rel
        assert doc in ids
        # the query is the summary line, which is not part of the document's text
        text = next(d["text"] for d in corpus if d["_id"] == doc)
        assert dataset.queries[qid] not in text
    again = docstrings.build(tmp_path / "again", max_documents=400, max_queries=50)
    assert (again / "corpus.jsonl").read_bytes() == (out / "corpus.jsonl").read_bytes()
