"""The map's topic labels (clusters of the 2D map, keywords by class-based TF-IDF) and the choice of
the field a map is coloured by first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from embedlake.config import MapSettings
from embedlake.lake import open_lake
from embedlake.reduce import maps, projection, topics

# four regions of the map, each with its own words; every document also has the common ones
VOCABULARY = [
    ["kidney", "renal", "dialysis"],
    ["wing", "airfoil", "lift"],
    ["library", "catalogue", "librarian"],
    ["compiler", "parser", "grammar"],
]
COMMON = "the study of results and methods in this paper"


def _map(n: int = 400, seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, str], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[-0.6, -0.6], [0.6, -0.6], [-0.6, 0.6], [0.6, 0.6]])
    region = rng.integers(0, 4, size=n)
    coords = (centres[region] + rng.normal(scale=0.08, size=(n, 2))).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    texts = {
        doc_id: f"{COMMON} {' '.join(rng.choice(VOCABULARY[r], size=4))} {COMMON}"
        for doc_id, r in zip(ids, region, strict=True)
    }
    return ids, coords, texts, region


class Reader:
    """The texts of the documents, counting which were read."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.read: list[str] = []

    def __call__(self, ids: Sequence[str]) -> dict[str, str]:
        self.read.extend(ids)
        return {i: self.texts[i] for i in ids if i in self.texts}


def test_each_region_is_named_by_its_own_words_at_every_level() -> None:
    ids, coords, texts, region = _map()
    settings = MapSettings(topic_levels=[4, 16])
    found = topics.fit(ids, coords, Reader(texts), settings)
    assert [level["clusters"] for level in found["levels"]] == [4, 16]
    assert found["sampled"] == 400 and found["seconds"] >= 0
    coarse = found["levels"][0]["topics"]
    assert len(coarse) == 4 and sum(t["size"] for t in coarse) == 400
    assert [t["size"] for t in coarse] == sorted((t["size"] for t in coarse), reverse=True)
    for topic in coarse:
        # the label sits on a point of its region, and names it with that region's words only
        r = region[ids.index(topic["id"])]
        assert sorted(topic["keywords"]) == sorted(VOCABULARY[r])
        assert (topic["x"], topic["y"]) == pytest.approx(
            tuple(coords[ids.index(topic["id"])]), abs=1e-5
        )
    for topic in found["levels"][1]["topics"]:
        words = set(topic["keywords"])
        assert len(words) == 3 and words & set(VOCABULARY[region[ids.index(topic["id"])]])
        assert not words & set(COMMON.split())  # stop words and everyone's words never name one
    again = topics.fit(ids, coords, Reader(texts), settings)
    assert {**again, "seconds": 0} == {**found, "seconds": 0}  # seeded: the same labels


def test_the_documents_read_are_capped_by_the_sample() -> None:
    ids, coords, texts, _ = _map(n=1000)
    reader = Reader(texts)
    settings = MapSettings(topic_levels=[4, 32], topic_sample=120, topic_min_size=10)
    found = topics.fit(ids, coords, reader, settings)
    assert len(reader.read) == 120 == found["sampled"] and len(set(reader.read)) == 120
    # 120 sampled documents hold 12 clusters of 10, not 32; every point of the map is counted
    assert [level["clusters"] for level in found["levels"]] == [4, 12]
    assert sum(t["size"] for t in found["levels"][0]["topics"]) == 1000
    named = {t["keywords"][0] for t in found["levels"][0]["topics"]}
    assert all(any(w in v for v in VOCABULARY) for w in named) and len(named) == 4


def test_documents_gone_or_wordless_give_no_labels() -> None:
    ids, coords, texts, _ = _map(n=60)
    settings = MapSettings(topic_levels=[4])
    missing = topics.fit(ids, coords, Reader({}), settings)  # all deleted since the fit
    assert missing == {"levels": [], "sampled": 0, "seconds": missing["seconds"]}
    only_stop_words = {i: "the and of" for i in ids}
    assert topics.fit(ids, coords, Reader(only_stop_words), settings)["levels"] == []
    assert topics.fit(ids, coords, Reader(texts), MapSettings(topic_levels=[]))["levels"] == []


def test_levels_are_capped_increasing_and_distinct() -> None:
    assert topics.levels_for([8, 32, 128], 20_000, 10) == [8, 32, 128]
    assert topics.levels_for([128, 8, 32], 500, 10) == [8, 32, 50]
    assert topics.levels_for([8, 32, 128], 100, 10) == [8, 10]
    assert topics.levels_for([8, 32], 15, 10) == []  # one cluster is no map of regions


def test_class_based_tf_idf_favours_a_word_of_one_class() -> None:
    # words: 0 in every document alike, 1 only in class 0, 2 only in class 1
    counts = sparse.csr_matrix(np.array([[3, 2, 0], [3, 1, 0], [3, 0, 2], [3, 0, 1]]))
    scores = topics.c_tf_idf(counts, np.array([0, 0, 1, 1]), 2)
    assert scores.shape == (2, 3)
    assert scores[0].argmax() == 1 and scores[1].argmax() == 2
    assert scores[0, 2] == scores[1, 1] == 0


def test_topics_are_stored_with_the_map(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    ids, coords, texts, _ = _map(n=80)
    fitted = projection.fit(ids, coords, MapSettings(method="pca"))
    fitted.save(lake, "releases/old")  # a map fitted before topics existed: none, not an error
    assert projection.Projection.load(lake, "releases/old").topics == {}
    fitted.topics = topics.fit(fitted.ids, fitted.coords, Reader(texts), MapSettings())
    fitted.save(lake, "releases/r1")
    assert projection.Projection.load(lake, "releases/r1").topics == fitted.topics


def test_the_default_colour_is_the_most_informative_field() -> None:
    # the demo's case: one source, fourteen labels
    demo = {
        "source": Counter({"docstrings": 3000}),
        "labels": Counter({f"package{i}": 200 + 10 * i for i in range(14)}),
    }
    assert maps.informative(demo) == "labels"
    # a field with one value never is, even with documents that lack it (its only "other")
    assert maps.informative({"source": Counter(a=9), "lang": Counter(en=5, **{maps.NONE: 5})}) == (
        "source"
    )
    # balanced beats lopsided; more values beat fewer when as balanced
    two = {"source": Counter(med=500, cran=500), "year": Counter(a=990, b=10)}
    assert maps.informative(two) == "source"
    four = {**two, "length": Counter(a=250, b=250, c=250, d=250)}
    assert maps.informative(four) == "length"
    # too many values to colour: not a candidate; equal information: source first, then by name
    wide = Counter({str(i): 1 for i in range(maps.MAX_CATEGORIES + 1)})
    assert maps.informative({"source": Counter(a=1, b=1), "id": wide}) == "source"
    assert maps.informative({"b": Counter(x=1, y=1), "a": Counter(x=1, y=1)}) == "a"
    assert maps.entropy(Counter(a=2, b=2)) == pytest.approx(1.0) and maps.entropy(Counter()) == 0


def test_a_label_whose_point_was_deleted_is_not_served() -> None:
    stored = {
        "sampled": 3,
        "levels": [{"clusters": 2, "topics": [{"id": "a", "keywords": ["x"]}, {"id": "b"}]}],
    }
    live = maps._live_topics(stored, ["c", "b"])  # the map's points in their order
    # each label with its point's position among the map's points, for the page
    assert live["levels"][0]["topics"] == [{"id": "b", "point": 1}] and live["sampled"] == 3
    assert stored["levels"][0]["topics"][0] == {"id": "a", "keywords": ["x"]}  # left alone
    assert maps._live_topics({}, ["a"]) == {"levels": []}
