"""The map a serving process shows for a release: the release's fitted projection, plus documents
that arrived since (placed among their nearest fitted neighbours from the release's index), minus
deleted ones. Built on first request and kept with the loaded release."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedlake.index import VectorIndex
from embedlake.reduce import projection
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_CATEGORIES = 40  # a colour legend longer than this is unreadable; the rest is "other"
_SAMPLE = 2000  # documents looked at to offer metadata fields for colouring


@dataclass
class MapData:
    release: str
    ids: list[str]
    coords: np.ndarray  # (n, 2) float32 in [-1, 1]
    meta: dict[str, Any]
    placed_late: int
    _labels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def points(self, offset: int, limit: int) -> bytes:
        """x0, y0, x1, y1, ... as little-endian float32."""
        return self.coords[offset : offset + limit].astype("<f4").tobytes()

    def labels(self, ws: Workspace, name: str) -> dict[str, Any]:
        """Per point the category of ``name`` (``source`` or a metadata field), as codes into a
        list of categories (most frequent first; ``other`` past MAX_CATEGORIES, ``(none)``)."""
        cached = self._labels.get(name)
        if cached is not None:
            return cached
        wanted = set(self.ids)
        values: dict[str, str] = {}
        for doc_id, source, metadata in ws.catalog.documents.iter_fields():
            if doc_id in wanted:
                values[doc_id] = source if name == "source" else _category(metadata.get(name))
        counts = Counter(values.get(i, "(none)") for i in self.ids)
        top = [c for c, _ in counts.most_common(MAX_CATEGORIES)]
        if len(counts) > MAX_CATEGORIES:
            top.append("other")
        position = {c: n for n, c in enumerate(top)}
        other = position.get("other", 0)
        codes = np.array(
            [position.get(values.get(i, "(none)"), other) for i in self.ids], dtype="<u2"
        )
        out = {
            "field": name,
            "categories": top,
            "counts": [counts.get(c, 0) for c in top],
            "codes": base64.b64encode(codes.tobytes()).decode(),
        }
        self._labels[name] = out
        return out


def _category(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, dict):
        return "(none)"
    return str(value)


def fields(ws: Workspace) -> list[str]:
    """``source`` and the metadata fields a map can be coloured by: scalar (or list) values with
    at most MAX_CATEGORIES distinct values among the first documents."""
    seen: dict[str, set[str]] = {}
    for n, (_, _, metadata) in enumerate(ws.catalog.documents.iter_fields()):
        if n >= _SAMPLE:
            break
        for key, value in metadata.items():
            if not isinstance(value, dict):
                seen.setdefault(key, set()).add(_category(value))
    return ["source", *sorted(k for k, v in seen.items() if 1 < len(v) <= MAX_CATEGORIES)]


def build(ws: Workspace, release_id: str, prefix: str, index: VectorIndex, k: int) -> MapData:
    fitted = projection.Projection.load(ws.lake, prefix)
    live = set(ws.catalog.documents.live_hashes())
    row = {doc_id: n for n, doc_id in enumerate(fitted.ids)}
    late = [i for i in index.ids() if i not in row and i in live]
    coords = fitted.coords
    if late:
        vectors = np.stack([v for i in late if (v := index.vector(i)) is not None])

        def neighbours(queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
            hits = index.search(queries, k * 2 + 10)
            return [[(row[d], 1.0 - s) for d, s in hits_ if d in row][:k] for hits_ in hits]

        placed = projection.place(vectors, neighbours, fitted.coords, k)
        coords = np.vstack([coords, placed])
    ids = fitted.ids + late
    keep = np.array([i in live for i in ids], dtype=bool)
    log.info("map of %s: %d fitted, %d placed since", release_id, len(fitted), len(late))
    return MapData(
        release_id,
        [i for i, kept in zip(ids, keep, strict=True) if kept],
        np.ascontiguousarray(coords[keep], dtype=np.float32),
        fitted.meta,
        len(late),
    )
