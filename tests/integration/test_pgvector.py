"""The pgvector index engine on a real PostgreSQL + pgvector: metadata filters and tombstones applied
in SQL (with the meaning of ``Documents.ids_where``), the iterative index scan that keeps a selective
filter at ``k`` results, and a release built and served with ``[index] engine = "pgvector"``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import make_url, text

from embedlake import Workspace
from embedlake.catalog import Catalog, open_catalog
from embedlake.catalog.documents import Document
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.index.exact import ExactIndex
from embedlake.index.pgvector import PgvectorIndex
from embedlake.ingest import delete_document, ingest_path
from embedlake.search.build import index_params
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection, write_jsonl

N, DIM = 20_000, 16


@dataclass
class Corpus:
    url: str
    catalog: Catalog
    index: PgvectorIndex
    vectors: np.ndarray


def _document(i: int) -> Document:
    metadata: dict[str, Any] = {
        "group": i % 100,  # 1 % of the documents each
        "lang": "en" if i % 3 else "de",
        "reviewed": i % 7 == 0,
        "year": "unknown" if i % 10 == 0 else 1990 + i % 4,  # not always a number
    }
    return Document(f"d{i}", "a" if i % 2 else "b", f"title {i}", f"text {i}", metadata)


@pytest.fixture(scope="module")
def corpus(postgres: Any) -> Iterator[Corpus]:
    """20,000 documents in a PostgreSQL catalog (d3 deleted), and their vectors in a pgvector
    index with a small ef_search (10): without iterative scans, a filter keeping 1 % of the
    documents would find about one result in ten. (With far fewer documents the planner rightly
    answers such a filter by scanning the matching rows instead of the HNSW index.)"""
    url = postgres.database()
    catalog = open_catalog(url)
    catalog.migrate()
    catalog.documents.upsert([_document(i) for i in range(N)])
    catalog.documents.delete("d3")
    with catalog.begin() as conn:
        conn.execute(text("ANALYZE documents"))  # what autovacuum does for a real catalog
    x = np.random.default_rng(0).normal(size=(N, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = PgvectorIndex(DIM, m=8, ef_construction=32, ef_search=10, url=url)
    index.add([f"d{i}" for i in range(N)], x)
    index.build()
    yield Corpus(url, catalog, index, x)
    index.drop()
    catalog.close()


def _queries(n: int = 20) -> np.ndarray:
    q = np.random.default_rng(1).normal(size=(n, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _exact(corpus: Corpus, ids: set[str], queries: np.ndarray, k: int) -> list[list[str]]:
    exact = ExactIndex(DIM)
    keep = sorted(ids)
    exact.add(keep, corpus.vectors[[int(i[1:]) for i in keep]])
    return [[d for d, _ in row] for row in exact.search(queries, k)]


def _hnsw_scans(url: str, table: str) -> int:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", [f"{table}_hnsw"]
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_selective_filter_returns_k_matching_results_through_the_iterative_scan(
    corpus: Corpus,
) -> None:
    table = corpus.index.table
    before = _hnsw_scans(corpus.url, table)
    index = PgvectorIndex(DIM, m=8, ef_construction=32, ef_search=10, url=corpus.url, table=table)
    queries = _queries()
    got = index.search_where(queries, 10, {"group": 7})
    index.close()  # a backend reports its statistics when it ends
    matching = corpus.catalog.documents.ids_where({"group": 7})
    assert len(matching) == 200
    assert all(len(row) == 10 for row in got)
    assert all(d in matching for row in got for d, _ in row)
    assert all([s for _, s in row] == sorted((s for _, s in row), reverse=True) for row in got)
    truth = _exact(corpus, matching, queries, 10)
    found = [[d for d, _ in row] for row in got]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9
    # the answers came from the HNSW index (an iterative scan), not from a scan of the table
    deadline = time.monotonic() + 30
    while _hnsw_scans(corpus.url, table) < before + len(queries) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _hnsw_scans(corpus.url, table) >= before + len(queries)


@pytest.mark.parametrize(
    "where",
    [
        {},
        {"source": "a"},
        {"lang": "en"},
        {"lang": ["en", "fr"]},
        {"group": 7},
        {"group": [7, 8.0]},
        {"reviewed": True},
        {"reviewed": False},
        {"lang": "de", "source": "b", "group": [2, 4, 6]},
        {"nothing": "here"},
    ],
)
def test_sql_filters_mean_what_ids_where_means(corpus: Corpus, where: dict[str, Any]) -> None:
    expected = corpus.catalog.documents.ids_where(where)
    assert "d3" not in expected  # the deleted document
    [got] = corpus.index.search_where(_queries(1), N, where)
    assert {d for d, _ in got} == expected
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_a_number_filter_skips_values_that_are_not_numbers(corpus: Corpus) -> None:
    # (ids_where casts every value of the field to a number: on PostgreSQL, "unknown" fails it)
    [got] = corpus.index.search_where(_queries(1), N, {"year": [1991, 1993]})
    expected = {f"d{i}" for i in range(N) if i % 10 and i % 4 in (1, 3) and i != 3}
    assert {d for d, _ in got} == expected


def test_a_filter_of_many_values_is_one_parameter_per_kind(corpus: Corpus) -> None:
    """(issue 19) One placeholder per value made a long list cost seconds to build and plan, and
    past 65,535 values PostgreSQL refuses the statement; each kind of value is now one array."""
    words = [f"w{n}" for n in range(70_000)]
    where = {"lang": [*words, "de"], "group": [*range(1_000, 71_000), 7, 8.0], "source": "b"}
    expected = corpus.catalog.documents.ids_where(where)
    assert expected and all(d.startswith("d") for d in expected)
    [got] = corpus.index.search_where(_queries(1), N, where)
    assert {d for d, _ in got} == expected


@pytest.mark.parametrize("where", [{"lang": []}, {"lang": {"en": 1}}, {"lang": [None]}])
def test_a_bad_filter_is_refused_with_the_field_named(corpus: Corpus, where: Any) -> None:
    with pytest.raises(InputError, match="filter 'lang'"):
        corpus.index.search_where(_queries(1), 10, where)


def test_searches_from_many_threads_share_the_pool(corpus: Corpus) -> None:
    queries = _queries(40)
    alone = corpus.index.search(queries, 10)
    filtered = corpus.index.search_where(queries, 10, {"source": "a"})
    errors: list[BaseException] = []
    results: dict[int, tuple[object, object]] = {}

    def client(n: int) -> None:
        try:
            for _ in range(3):
                results[n] = (
                    corpus.index.search(queries, 10),
                    corpus.index.search_where(queries, 10, {"source": "a"}),
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]  # > 16 connections
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == (alone, filtered) for r in results.values()) and len(results) == 24


def test_a_saved_index_whose_table_is_gone_is_not_found(corpus: Corpus, tmp_path: Path) -> None:
    index = PgvectorIndex(DIM, m=8, ef_construction=32, url=corpus.url)
    index.add(["x", "y"], corpus.vectors[:2])
    index.save(tmp_path)
    loaded = PgvectorIndex.load(tmp_path, url=corpus.url, ef_search=20)
    assert len(loaded) == 2 and loaded.ef_search == 20 and loaded.params()["m"] == 8
    loaded.close()
    index.drop()
    with pytest.raises(NotFound, match="not in the database"):
        PgvectorIndex.load(tmp_path, url=corpus.url)
    with pytest.raises(ConfigError, match="needs the URL"):
        PgvectorIndex.load(tmp_path)


def test_pgvector_needs_a_postgresql_catalog(ws: Workspace) -> None:
    ws.settings.index.engine = "pgvector"
    with pytest.raises(ConfigError, match="must be PostgreSQL"):
        index_params(ws, "pgvector")


TAGGED = [
    {"_id": "t1", "text": "kidney stones in adults", "metadata": {"lang": "en"}},
    {"_id": "t2", "text": "kidney stones in children", "metadata": {"lang": "de"}},
    {"_id": "t3", "text": "renal failure after kidney surgery", "lang": "en"},
]


def test_a_release_on_pgvector_is_searched_with_filters_and_without_deleted_documents(
    postgres: Any, tmp_path: Path
) -> None:
    environ = {
        "EMBEDLAKE_CATALOG__URL": postgres.database(),
        "EMBEDLAKE_INDEX__ENGINE": "pgvector",
        "EMBEDLAKE_EMBED__MODEL": "lsa",
        "EMBEDLAKE_MAP__METHOD": "pca",
    }
    with Workspace.init(tmp_path / "ws", environ=environ) as ws:
        ingest_path(ws, collection("med"))
        ingest_path(ws, write_jsonl(tmp_path / "tagged.jsonl", TAGGED), source="tagged")
        release = _build_now(ws, train(ws, name="lsa-a", kind="lsa")[0])
        assert release["status"] == "published"
        searcher = Searcher(ws)
        assert searcher.record.engine == "pgvector" and isinstance(searcher.index, PgvectorIndex)
        assert len(searcher.index) == ws.catalog.documents.count() == 1036
        with ws.catalog.connect() as conn:  # the vectors are in the catalog database
            table = searcher.index.table
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1036

        query = "kidney stones"
        hits = searcher.search(query, 10)
        assert len(hits) == 10
        english = searcher.search_many([query], 10, {"lang": "en"})[0]
        assert {h.id for h in english} == {"t1", "t3"}  # fewer than k match: all of them
        med = searcher.search_many([query], 10, {"source": "med"})[0]
        allowed = ws.catalog.documents.ids_where({"source": "med"})
        vector = searcher.encode([query])
        by_ids = searcher.index.search(vector, 10, allowed)[0]  # the id-list path, same index
        assert [h.id for h in med] == [d for d, _ in by_ids]

        gone = med[0].id
        delete_document(ws, gone)
        assert gone not in {h.id for h in searcher.search(query, 10)}
        again = searcher.search_many([query], 10, {"source": "med"})[0]
        assert len(again) == 10 and gone not in {h.id for h in again}
        assert [h.id for h in again][:9] == [h.id for h in med][1:]
        near = searcher.more_like(med[1].id, 5, {"source": "med"})
        assert len(near) == 5 and {gone, med[1].id}.isdisjoint(h.id for h in near)
