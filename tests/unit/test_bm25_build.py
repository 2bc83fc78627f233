"""BM25 built in bounded memory (search/bm25_build.py): the scores of bm25s's own build, one
chunk held at a time."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedlake.errors import InputError
from embedlake.search.bm25 import Bm25
from embedlake.search.bm25_build import build
from tests.conftest import collection


def _cranfield() -> tuple[list[str], list[str], list[str]]:
    folder = collection("cranfield")
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    ids = [r["_id"] for r in rows]
    texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
    texts[5] = ""  # a unit with no text
    texts[6] = "the of and"  # and one of stop words only
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f][:60]
    return ids, texts, [*queries, "the of and", "zzzz unseen"]


@pytest.mark.parametrize("stem", [True, False])
def test_a_streamed_build_scores_as_bm25s_own(tmp_path: Path, stem: bool) -> None:
    """Chunks of 97 units (so terms and units cross chunk boundaries): every query finds the
    same units with the same scores as bm25s's build over the whole corpus at once."""
    ids, texts, queries = _cranfield()
    whole = Bm25(ids, texts, stem=stem)
    streamed = build(zip(ids, texts, strict=True), tmp_path / "bm25", stem=stem, chunk=97)
    assert streamed.ids == ids and streamed.stem == stem
    found = 0
    for a, b in zip(whole.search(queries, 20), streamed.search(queries, 20), strict=True):
        assert [d for d, _ in a] == [d for d, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)
        found += len(a)
    assert found > 1000  # the queries found something to compare
    again = Bm25.load(tmp_path / "bm25")  # what a release uploads is what serving loads
    assert again.search(queries[:5], 5) == streamed.search(queries[:5], 5)


def test_a_streamed_build_holds_one_chunk_at_a_time(tmp_path: Path) -> None:
    """Python's traced memory at its peak, for a corpus and for twice that corpus: bm25s's own
    build holds every unit's tokens at once and grows with the corpus; the streamed one holds a
    chunk of them (with the vocabulary, the same here) and does not."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(20_000)])
    units = [(f"d{i}", " ".join(rng.choice(words, 80))) for i in range(6_000)]

    def peak(fn: Callable[[], object]) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole, streamed = [], []
    for n in (3_000, 6_000):
        some = units[:n]
        whole.append(peak(lambda: Bm25([k for k, _ in some], [t for _, t in some])))  # noqa: B023
        folder = tmp_path / f"bm25-{n}"
        # in this process alone (a pool holds a few chunks in flight, in workers and results)
        streamed.append(
            peak(lambda: build(iter(some), folder, stem=False, chunk=1_000, processes=1))  # noqa: B023
        )
    grew = whole[1] - whole[0]
    assert grew > sum(len(t) for _, t in units[3_000:])  # more than the added texts themselves
    assert streamed[1] - streamed[0] < grew / 10, (streamed, whole)
    assert streamed[1] < whole[1]


def test_nothing_to_index_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no documents"):
        build(iter([]), tmp_path / "bm25", stem=True)


def test_tokenised_by_two_processes_the_files_are_the_same(tmp_path: Path) -> None:
    """A pool of two processes tokenises the chunks (some in flight at once) and the files it
    writes are byte for byte the ones one process writes: chunks are merged in their order."""
    ids, texts, queries = _cranfield()
    one = build(zip(ids, texts, strict=True), tmp_path / "one", stem=True, chunk=97, processes=1)
    two = build(zip(ids, texts, strict=True), tmp_path / "two", stem=True, chunk=97, processes=2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) >= 4
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one.search(queries, 10) == two.search(queries, 10)


def test_a_worker_error_reaches_the_caller(tmp_path: Path) -> None:
    """A text the tokenizer cannot take fails the build with its own error, not a broken pool."""
    units = [(f"d{i}", f"word{i} text") for i in range(300)]
    units[250] = ("bad", None)  # type: ignore[assignment]  # what a broken unit reader could give
    for processes in (1, 2):  # the same error either way
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'lower'"):
            build(
                iter(units),
                tmp_path / f"bm25-{processes}",
                stem=False,
                chunk=50,
                processes=processes,
            )
