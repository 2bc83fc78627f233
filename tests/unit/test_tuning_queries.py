"""The query-like spans an index's tuning measures recall with (``search/tuning_queries.py``)."""

from __future__ import annotations

import random

from embedlake.catalog.documents import Document
from embedlake.index.keys import passage_key
from embedlake.search.tuning_queries import SPAN_WORDS, span_text

WORDS = [f"w{i}" for i in range(400)]
DOC = Document("d", "s", "Title words", " ".join(WORDS))


def test_a_span_is_a_run_of_words_of_its_passage() -> None:
    start = DOC.text.index("w100")
    end = DOC.text.index("w200") - 1  # the passage: w100 … w199
    rng = random.Random(0)
    low, high = SPAN_WORDS
    lengths = set()
    for _ in range(50):
        words = span_text(DOC, passage_key("d", start, end), rng).split()
        first = WORDS.index(words[0])
        assert words == WORDS[first : first + len(words)]  # consecutive
        assert first >= 100 and first + len(words) <= 200  # inside the passage
        assert low <= len(words) <= high
        lengths.add(len(words))
    assert len(lengths) > 5  # lengths vary, short queries to sentence-long ones


def test_a_whole_document_gives_a_span_of_its_title_and_text_and_short_ones_all_of_it() -> None:
    rng = random.Random(1)
    words = span_text(DOC, "d", rng).split()
    assert SPAN_WORDS[0] <= len(words) <= SPAN_WORDS[1]
    assert " ".join(words) in DOC.full_text
    short = Document("s", "s", "", "three short words")
    assert span_text(short, "s", rng) == "three short words"


def test_a_document_gone_since_it_was_embedded_gives_no_span() -> None:
    assert span_text(None, "gone", random.Random(0)) == ""


def test_a_long_passage_gives_whole_consecutive_words_from_a_window_of_it() -> None:
    words = [f"word{i}" for i in range(20_000)]  # ~180 kB: never split whole
    long = Document("l", "s", "", " ".join(words))
    rng = random.Random(2)
    firsts = set()
    for _ in range(30):
        span = span_text(long, "l", rng).split()
        first = words.index(span[0])
        assert span == words[first : first + len(span)]  # whole words, none cut at an edge
        assert SPAN_WORDS[0] <= len(span) <= SPAN_WORDS[1]
        firsts.add(first // 1000)
    assert len(firsts) > 10  # drawn from all over the document, not from its start
