"""Topic labels for a map's regions: clusters of the 2D map at a few levels (coarse to fine), each
named by the keywords that set its documents apart, as Embedding Atlas and Nomic Atlas label theirs.

Fitted with the map (``releases.reduce.map_release``) and stored beside it as ``topics.json``:

- the clusters are k-means (scikit-learn, seeded) of the *2D* coordinates, so a label names a
  region the reader sees, not a neighbourhood the projection may have torn apart;
- keywords per cluster are class-based TF-IDF (c-TF-IDF, as BERTopic computes it): scikit-learn's
  ``CountVectorizer`` (English stop words) counts the words of a seeded sample of the documents,
  the counts are summed per cluster, and a word scores ``tf(word, cluster) * log(1 + A / f(word))``
  (A: the average words per cluster, f: the word's count over all clusters; tf of the counts'
  square roots, BERTopic's ``reduce_frequent_words``), so a word frequent in one cluster and rare
  elsewhere wins; words in more than 40% of the sampled documents are left out;
- each label sits on the cluster's most central point (the point nearest its k-means centre), so
  it stays on the points however the cluster is shaped, and the page finds it on screen by id.

The cost is bounded by ``[map] topic_sample`` documents of ``topic_chars`` characters each,
whatever the collection's size (docs/decisions/0018-map-topic-labels.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embedlake.config import MapSettings
from embedlake.reduce.projection import Projection
from embedlake.workspace import Workspace

if TYPE_CHECKING:  # scikit-learn and SciPy load when a map is fitted, not with the module
    from scipy import sparse

log = logging.getLogger(__name__)

# words of 3+ characters that start with a letter: numbers and fragments make poor labels
TOKENS = r"(?u)\b[^\W\d_][^\W_]{2,}\b"

MAX_DF = 0.4  # share of the sampled documents a keyword may appear in, at most

# ids → their texts (title and body), for the sampled documents
Texts = Callable[[Sequence[str]], dict[str, str]]


@dataclass(frozen=True)
class Topic:
    id: str  # the point the label sits on
    x: float
    y: float
    size: int  # points of the map in the cluster
    keywords: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "x": self.x,
            "y": self.y,
            "size": self.size,
            "keywords": self.keywords,
        }


def levels_for(wanted: Sequence[int], sampled: int, min_size: int) -> list[int]:
    """The cluster counts to fit: each capped at one cluster per ``min_size`` sampled documents,
    increasing, without repeats (a small collection gets fewer levels)."""
    cap = sampled // min_size
    out: list[int] = []
    for k in sorted(wanted):
        k = min(k, cap)
        if k >= 2 and (not out or k > out[-1]):
            out.append(k)
    return out


def sample_rows(n: int, settings: MapSettings) -> np.ndarray:
    """Rows of the map whose documents are read for keywords (seeded, sorted)."""
    rng = np.random.default_rng(settings.seed)
    if n <= settings.topic_sample:
        return np.arange(n)
    return np.sort(rng.choice(n, settings.topic_sample, replace=False))


def label(ws: Workspace, fitted: Projection, settings: MapSettings) -> None:
    """Fit the topics of a just-fitted map (its documents' texts from the catalog); what they
    cost goes in the map's ``meta`` beside the projection's own seconds."""

    def texts(ids: Sequence[str]) -> dict[str, str]:
        return {i: d.full_text for i, d in ws.catalog.documents.contents(ids).items()}

    fitted.topics = fit(fitted.ids, fitted.coords, texts, settings)
    fitted.meta["topics"] = {
        "levels": [level["clusters"] for level in fitted.topics["levels"]],
        "sampled": fitted.topics["sampled"],
        "seconds": fitted.topics["seconds"],
    }


def fit(
    ids: Sequence[str], coords: np.ndarray, texts: Texts, settings: MapSettings
) -> dict[str, Any]:
    """Topics of a map: ``{"levels": [{"clusters": k, "topics": [...]}, ...], ...}``, levels
    coarse to fine; each level's topics largest first."""
    started = time.perf_counter()
    rows = sample_rows(len(ids), settings)
    found = texts([ids[r] for r in rows])
    rows = np.array([r for r in rows if found.get(ids[r])], dtype=np.int64)  # deleted meanwhile
    docs = [found[ids[r]][: settings.topic_chars] for r in rows]
    levels = levels_for(settings.topic_levels, len(rows), settings.topic_min_size)
    out: dict[str, Any] = {"levels": [], "sampled": len(rows)}
    counts, vocabulary = _counts(docs) if levels else (None, np.array([]))
    if counts is None:
        levels = []
    for k in levels:
        assert counts is not None
        topics = _level(ids, coords, rows, counts, vocabulary, k, settings)
        out["levels"].append({"clusters": k, "topics": [t.as_dict() for t in topics]})
    out["seconds"] = round(time.perf_counter() - started, 3)
    log.info(
        "map topics: %s clusters from %d documents in %.1fs", levels, len(rows), out["seconds"]
    )
    return out


def _counts(docs: list[str]) -> tuple[sparse.csr_matrix | None, np.ndarray]:
    """Word counts per sampled document, and the vocabulary (None when no word is left)."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(
        stop_words="english",
        token_pattern=TOKENS,
        min_df=2,
        # a word in most documents names no region (mail headers' "writes", "edu"), whatever
        # its count: left out before it can outweigh the rarer words that do
        max_df=MAX_DF,
        max_features=20_000,
    )
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError:  # "empty vocabulary": nothing but stop words, or too few documents
        return None, np.array([])
    return sparse.csr_matrix(counts), vectorizer.get_feature_names_out()


def _level(
    ids: Sequence[str],
    coords: np.ndarray,
    rows: np.ndarray,
    counts: sparse.csr_matrix,
    vocabulary: np.ndarray,
    k: int,
    settings: MapSettings,
) -> list[Topic]:
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=settings.seed)
    kmeans.fit(coords[rows])  # on the sample: the cost stays bounded; every point assigned below
    every = kmeans.predict(coords)
    sizes = np.bincount(every, minlength=k)
    scores = c_tf_idf(counts, kmeans.labels_, k)
    topics = []
    for c in range(k):
        members = np.flatnonzero(every == c)
        if not len(members) or not scores[c].any():
            continue
        centre = kmeans.cluster_centers_[c]
        anchor = members[((coords[members] - centre) ** 2).sum(axis=1).argmin()]
        best = _top(scores[c], settings.topic_keywords)
        words = [str(vocabulary[w]) for w in best if scores[c, w] > 0]
        x, y = coords[anchor]
        topics.append(
            Topic(ids[anchor], round(float(x), 5), round(float(y), 5), int(sizes[c]), words)
        )
    return sorted(topics, key=lambda t: -t.size)


def c_tf_idf(counts: sparse.csr_matrix, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, words) class-based TF-IDF of the documents' ``counts`` grouped by ``labels``."""
    from scipy import sparse

    member = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    per_class = np.asarray((member @ counts).todense(), dtype=np.float64)
    total = per_class.sum(axis=0)
    average = per_class.sum(axis=1).mean()
    idf = np.log1p(average / np.maximum(total, 1))
    # the square root of the counts (BERTopic's reduce_frequent_words): a frequent word's count
    # no longer swamps the idf that says whether it is particular to this cluster
    damped = np.sqrt(per_class)
    tf = damped / np.maximum(damped.sum(axis=1, keepdims=True), 1e-12)
    return np.asarray(tf * idf)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indexes of the ``n`` highest scores, highest first (ties by index)."""
    n = min(n, len(scores))
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.lexsort((part, -scores[part]))]
