"""Encoder kind ``lsa``: TF-IDF + truncated SVD (latent semantic analysis), fitted in seconds.

Saved without pickle: the vocabulary and IDF weights as JSON/NumPy and the SVD components as NumPy,
so an artifact is plain data, loads on any scikit-learn version and hashes reproducibly.
scikit-learn (over a second of CPU to import) is imported where an LSA model is fitted or loaded,
not with this module: every process that resolves a model imports it, most to serve another kind.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

from embedlake.encoders import Vectors, normalise
from embedlake.errors import InputError

KIND = "lsa"
_VECTORIZER = dict(sublinear_tf=True, stop_words="english", lowercase=True, dtype=np.float32)
_WORDS = r"(?u)\b\w\w+\b"  # scikit-learn's token pattern, the one every LSA model is fitted with
# On ASCII, that pattern's tokens are the runs of [A-Za-z0-9_] of two bytes or more: every other
# byte made a space, ``bytes.split`` finds the runs (a run of one is in no vocabulary)
_WORD_BYTES = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else ord(" ") for c in range(256)
)


class LsaEncoder:
    kind = KIND

    def __init__(self, vectorizer: TfidfVectorizer, components: np.ndarray) -> None:
        self.vectorizer = vectorizer
        # terms × dims, C-ordered: ``sparse @ components.T`` would copy the whole (transposed)
        # matrix on every call (scipy ravels it), hundreds of MB for a large vocabulary. Only
        # this copy is kept: each process that embeds holds one (embeddings.processes).
        self._projection = np.ascontiguousarray(np.asarray(components, dtype=np.float32).T)
        self.dim = int(components.shape[0])
        # The vectorizer's counting, done by C code: its tokens (lower-cased text, its token
        # pattern) counted by ``Counter`` and looked up by ``map``, where scikit-learn loops over
        # every token in Python, half of a shard's time at ten million documents. Its stop words
        # are left out of the lookup, as its analyser leaves them out. The matrix is the one
        # scikit-learn counts, so the vectors are too (tests/unit/test_encoders.py).
        vocabulary = getattr(vectorizer, "vocabulary_", None) or vectorizer.vocabulary
        stop = vectorizer.get_stop_words() or frozenset()
        self._terms = {t: int(j) for t, j in vocabulary.items() if t not in stop}
        # an ASCII text (most of them) is split by bytes methods, without the pattern: the encode
        # is 1.57× scikit-learn's, 1.12× with the pattern (bench/lsa_counts.py)
        self._ascii_terms = (
            {t.encode(): j for t, j in self._terms.items() if t.isascii()}
            if vectorizer.token_pattern == _WORDS
            else None
        )
        self._width = len(vocabulary)
        self._tokens = re.compile(vectorizer.token_pattern)
        from sklearn.feature_extraction.text import TfidfTransformer

        self._tfidf = TfidfTransformer(
            norm=vectorizer.norm,
            use_idf=vectorizer.use_idf,
            smooth_idf=vectorizer.smooth_idf,
            sublinear_tf=vectorizer.sublinear_tf,
        )
        self._tfidf.idf_ = vectorizer.idf_

    @property
    def components(self) -> np.ndarray:
        """dims × terms, as fitted (a view)."""
        return self._projection.T

    @classmethod
    def fit(cls, texts: Sequence[str], n_components: int = 256, seed: int = 0) -> LsaEncoder:
        if len(texts) < 3:
            raise InputError(f"LSA needs at least 3 documents to fit, the corpus has {len(texts)}")
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(**_VECTORIZER)
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError as exc:  # e.g. every word is a stop word
            raise InputError(f"cannot fit LSA on this corpus: {exc}") from None
        k = max(2, min(n_components, matrix.shape[1] - 1, matrix.shape[0] - 1))
        svd = TruncatedSVD(n_components=k, random_state=seed, algorithm="randomized")
        svd.fit(matrix)
        return cls(vectorizer, svd.components_)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> Vectors:
        tfidf = self._tfidf.transform(self._counts(texts), copy=False)
        return normalise(np.asarray(tfidf @ self._projection))

    def _counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Term counts, one row a text: what the vectorizer's ``CountVectorizer`` makes."""
        find, term = self._tokens.findall, self._terms.get
        ascii_term = self._ascii_terms.get if self._ascii_terms is not None else None
        columns: list[int] = []
        counts: list[int] = []
        sizes: list[int] = []
        for text in texts:
            lowered = text.lower()
            if ascii_term is not None and lowered.isascii():
                found: Counter[Any] = Counter(lowered.encode().translate(_WORD_BYTES).split())
                columns.extend(map(ascii_term, found, repeat(-1)))
            else:
                found = Counter(find(lowered))
                columns.extend(map(term, found, repeat(-1)))
            counts.extend(found.values())
            sizes.append(len(found))
        cols = np.array(columns, dtype=np.int64)
        known = cols >= 0
        rows = np.repeat(np.arange(len(sizes)), sizes)[known]
        indptr = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(sizes)), out=indptr[1:])
        values = np.array(counts, dtype=np.float32)[known]
        matrix = sparse.csr_matrix(
            (values, cols[known], indptr), shape=(len(sizes), self._width), dtype=np.float32
        )
        matrix.sort_indices()
        return matrix

    def save(self, folder: Path) -> None:
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        (folder / "vocabulary.json").write_text(
            json.dumps(vocabulary, sort_keys=True), encoding="utf-8"
        )
        np.save(folder / "idf.npy", self.vectorizer.idf_.astype(np.float32))
        np.save(folder / "components.npy", np.ascontiguousarray(self.components))


def load(folder: Path, manifest: dict[str, Any], **options: Any) -> LsaEncoder:
    try:
        vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        idf = np.load(folder / "idf.npy")
        components = np.load(folder / "components.npy")
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a loadable LSA model: {exc}") from None
    if (
        components.ndim != 2
        or components.shape[1] != len(vocabulary)
        or len(idf) != len(vocabulary)
    ):
        raise InputError(
            f"{folder}: LSA files disagree in shape (vocabulary {len(vocabulary)}, "
            f"idf {len(idf)}, components {components.shape})"
        )
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(vocabulary=vocabulary, **_VECTORIZER)
    vectorizer.idf_ = idf
    return LsaEncoder(vectorizer, components)
