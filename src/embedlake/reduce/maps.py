"""The map a serving process shows for a release: the release's fitted projection, plus documents
that arrived since (placed among their nearest fitted neighbours from the release's index), minus
deleted ones. Built on first request and kept with the loaded release."""

from __future__ import annotations

import base64
import gzip
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedlake.index import VectorIndex
from embedlake.index.keys import doc_of
from embedlake.index.stream import sample_of
from embedlake.reduce import projection
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_CATEGORIES = 40  # a colour legend longer than this is unreadable; the rest is "other"
_SAMPLE = 2000  # documents (a seeded random sample) looked at to offer fields for colouring
NONE = "(none)"  # the category of a document without the field
GZIP_LEVEL = 6  # 9 MB of ids in ~0.3 s once, to a quarter of their size
# compressed pages kept per map (a page load asks for 5 at a million points): at most ~16 × 7 MB
# however many different pages clients ask for
GZIP_KEPT = 16


@dataclass
class MapData:
    release: str
    ids: list[str]
    coords: np.ndarray  # (n, 2) float32 in [-1, 1]
    meta: dict[str, Any]
    placed_late: int
    topics: dict[str, Any] = field(default_factory=dict)  # the regions' labels (reduce/topics.py)
    _labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    _gzipped: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _labelling: threading.Lock = field(default_factory=threading.Lock)

    def points(self, offset: int, limit: int, encoding: str = "f32") -> bytes:
        """x0, y0, x1, y1, ... as little-endian float32, or with ``u16`` as uint16 from 0 (-1)
        to 65535 (1): a grid finer than any screen's pixels in half the bytes."""
        part = self.coords[offset : offset + limit]
        if encoding == "u16":
            return bytes(np.rint((np.clip(part, -1, 1) + 1) * 32767.5).astype("<u2").tobytes())
        return bytes(part.astype("<f4").tobytes())

    def ids_text(self, offset: int, limit: int) -> bytes:
        """The ids, one per line (an id holds no control character: ingest refuses them)."""
        return "\n".join(self.ids[offset : offset + limit]).encode()

    def compressed(self, key: str, make: Callable[[], bytes]) -> bytes:
        """``make()`` gzipped, kept by ``key``: the map's pages are large and asked for again
        by every page load, so each is compressed once (the newest few are kept)."""
        with self._lock:
            found = self._gzipped.get(key)
        if found is None:
            found = gzip.compress(make(), compresslevel=GZIP_LEVEL, mtime=0)
            with self._lock:
                self._gzipped[key] = found
                while len(self._gzipped) > GZIP_KEPT:
                    self._gzipped.pop(next(iter(self._gzipped)))
        return found

    def labels(self, ws: Workspace, name: str) -> dict[str, Any]:
        """Per point the category of ``name`` (``source`` or a metadata field), as codes into a
        list of categories (most frequent first; ``other`` past MAX_CATEGORIES, ``(none)``)."""
        with self._labelling:  # one at a time: a second asker waits for the first's answer
            cached = self._labels.get(name)
            if cached is None:
                cached = self._labels[name] = self._compute_labels(ws, name)
            return cached

    def _compute_labels(self, ws: Workspace, name: str) -> dict[str, Any]:
        wanted = set(self.ids)
        values: dict[str, str] = {}
        for doc_id, source, metadata in ws.catalog.documents.iter_fields():
            if doc_id in wanted:
                values[doc_id] = source if name == "source" else _category(metadata.get(name))
        counts = Counter(values.get(i, NONE) for i in self.ids)
        top = [c for c, _ in counts.most_common(MAX_CATEGORIES)]
        if len(counts) > MAX_CATEGORIES:
            top.append("other")
        position = {c: n for n, c in enumerate(top)}
        other = position.get("other", 0)
        codes = np.array([position.get(values.get(i, NONE), other) for i in self.ids], dtype="<u2")
        return {
            "field": name,
            "categories": top,
            "counts": [counts.get(c, 0) for c in top],
            "codes": base64.b64encode(codes.tobytes()).decode(),
        }


def _category(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, dict):
        return NONE
    return str(value)


@dataclass(frozen=True)
class Fields:
    offered: list[str]  # ``source``, then metadata fields with 2..MAX_CATEGORIES values
    default: str  # the most informative of them (see ``informative``)


def fields(ws: Workspace) -> Fields:
    """The fields a map can be coloured by, from a seeded sample of the live documents: ``source``
    and the metadata fields with scalar (or list) values, 2 to MAX_CATEGORIES of them."""
    # drawn from the ids, then only the sample read (reading every document's metadata to keep
    # a few thousand took minutes at ten million documents)
    ids = sample_of(ws.catalog.documents.iter_live_ids(), _SAMPLE, seed=0)
    found = ws.catalog.documents.get_many(ids)
    docs = [(d.source, d.metadata) for d in (found[i] for i in ids if i in found)]
    counts: dict[str, Counter[str]] = {"source": Counter(source for source, _ in docs)}
    for _, metadata in docs:
        for name, value in metadata.items():
            if name != "source" and not isinstance(value, dict):
                counts.setdefault(name, Counter())[_category(value)] += 1
    for counter in counts.values():
        missing = len(docs) - sum(counter.values())
        if missing:
            counter[NONE] += missing
    offered = [
        "source",
        *sorted(n for n, c in counts.items() if n != "source" and 1 < _values(c) <= MAX_CATEGORIES),
    ]
    return Fields(offered, informative({n: counts[n] for n in offered}))


def _values(counts: Mapping[str, int]) -> int:
    return sum(1 for c, n in counts.items() if c != NONE and n > 0)


def entropy(counts: Mapping[str, int]) -> float:
    """Shannon entropy (bits) of a field's categories, documents without it counted as one."""
    total = sum(counts.values())
    return (
        -sum(n / total * math.log2(n / total) for n in counts.values() if n > 0) if total else 0.0
    )


def informative(counts: Mapping[str, Mapping[str, int]]) -> str:
    """The field that tells most about a point: the highest entropy among fields with 2 to
    MAX_CATEGORIES values (a field with one value says nothing; more would share colours).
    ``source`` when no field qualifies (it is always there), and first among equals."""
    best, score = "source", 0.0
    for name in sorted(counts, key=lambda n: (n != "source", n)):
        if 1 < _values(counts[name]) <= MAX_CATEGORIES:
            h = entropy(counts[name])
            if h > score + 1e-9:
                best, score = name, h
    return best


def build(ws: Workspace, release_id: str, prefix: str, index: VectorIndex, k: int) -> MapData:
    fitted = projection.Projection.load(ws.lake, prefix)
    gone = ws.catalog.documents.deleted_ids()  # not every live id: ten million at that size
    row = {doc_id: n for n, doc_id in enumerate(fitted.ids)}
    # the index holds passages: a document that arrived since the fit is placed from the mean of
    # its passages' vectors, like the fitted ones (release build)
    keys: dict[str, list[str]] = {}
    for key in index.ids():
        doc = doc_of(key)
        if doc not in row and doc not in gone:
            keys.setdefault(doc, []).append(key)
    late = [d for d, held in keys.items() if any(index.vector(k) is not None for k in held)]
    coords = fitted.coords
    if late:
        vectors = np.stack([_mean([index.vector(k) for k in keys[d]]) for d in late])

        def neighbours(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            rows = np.full((len(queries), k), -1, dtype=np.int64)
            dist = np.zeros((len(queries), k), dtype=np.float64)
            for n, hits in enumerate(index.search(queries, k * 4 + 10)):
                for m, (fitted_row, distance) in enumerate(_nearest_documents(hits, row, k)):
                    rows[n, m], dist[n, m] = fitted_row, distance
            return rows, dist

        placed = projection.place(vectors, neighbours, fitted.coords, k)
        coords = np.vstack([coords, placed])
    ids = fitted.ids + late
    keep = np.array([i not in gone for i in ids], dtype=bool)
    kept = [i for i, k in zip(ids, keep, strict=True) if k]
    log.info("map of %s: %d fitted, %d placed since", release_id, len(fitted), len(late))
    return MapData(
        release_id,
        kept,
        np.ascontiguousarray(coords[keep], dtype=np.float32),
        fitted.meta,
        len(late),
        _live_topics(fitted.topics, kept),
    )


def _mean(vectors: list[np.ndarray | None]) -> np.ndarray:
    found = np.vstack([v for v in vectors if v is not None]).mean(axis=0)
    norm = float(np.linalg.norm(found))
    out: np.ndarray = found / norm if norm > 0 else found
    return out


def _nearest_documents(
    hits: list[tuple[str, float]], row: dict[str, int], k: int
) -> list[tuple[int, float]]:
    """Passage hits → (row of the fitted document, cosine distance), each document once."""
    out: dict[int, float] = {}
    for key, score in hits:
        n = row.get(doc_of(key))
        if n is not None and n not in out:
            out[n] = 1.0 - score
            if len(out) == k:
                break
    return list(out.items())


def _live_topics(topics: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """The map's topics, less those whose point (where the label sits) was deleted since, each
    with its point's position among ``ids`` (the page finds it without an index of every id)."""
    labelled = {t["id"] for level in topics.get("levels", []) for t in level["topics"]}
    position = {i: n for n, i in enumerate(ids) if i in labelled}
    levels = [
        {
            **level,
            "topics": [
                {**t, "point": position[t["id"]]} for t in level["topics"] if t["id"] in position
            ],
        }
        for level in topics.get("levels", [])
    ]
    return {**topics, "levels": levels}
