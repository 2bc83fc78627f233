"""Prometheus metrics of one serving process (or of all of them, in multiprocess mode).

Labels are route templates (``/v1/documents/{doc_id}``), never raw paths, ids or anything a client
sends, so the series stay few and no secret or document text can reach ``/metrics``.
With ``--workers N``, ``serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and every worker writes there, so
any worker's ``/metrics`` shows the whole server.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedlake_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "embedlake_http_request_duration_seconds",
            "Time from request to response, by route and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "embedlake_embed_batch_size",
            "Texts per encoder call made by the dynamic batcher.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.index_vectors = Gauge(
            "embedlake_index_vectors",
            "Vectors in the index behind each followed alias.",
            ["alias"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.release = Gauge(
            "embedlake_release_info",
            "1 for the release (and model) each alias serves now.",
            ["alias", "release", "model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.swaps = Counter(
            "embedlake_release_swaps",
            "Hot swaps to a new release after an alias moved.",
            ["alias"],
            registry=r,
        )
        self.texts_split = Counter(
            "embedlake_texts_split",
            "Texts longer than the encoder's window embedded as the mean of their passages.",
            ["route"],
            registry=r,
        )
        self.texts_cut = Counter(
            "embedlake_texts_cut",
            "Texts cut at the encoder's window (with passages off, or over the passage cap).",
            ["route"],
            registry=r,
        )
        self.cut_documents = Gauge(
            "embedlake_release_cut_documents",
            "Documents of the release behind each alias that were cut (longer than its "
            "chunking keeps): their tail is not searchable.",
            ["alias"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self._serving: dict[str, tuple[str, str, str]] = {}
        # each (route, method, status)'s series, looked up once: ``labels()`` costs a few
        # microseconds a request (the label sets are few: route templates, never raw paths)
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request answered: counted, and its latency recorded."""
        series = self._series.get((route, method, status))
        if series is None:
            series = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._series[(route, method, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def serving(
        self, alias: str, release: str, model: str, vectors: int, cut_documents: int = 0
    ) -> None:
        """Record what ``alias`` serves now (the previous release's series is dropped, or set
        to 0 with ``--workers N``)."""
        before = self._serving.get(alias)
        if before is not None and before != (alias, release, model):
            if _shared():
                # the workers' shared files cannot drop a series: the old one reads 0
                self.release.labels(*before).set(0)
            else:
                self.release.remove(*before)
        self._serving[alias] = (alias, release, model)
        self.release.labels(alias, release, model).set(1)
        self.index_vectors.labels(alias).set(vectors)
        self.cut_documents.labels(alias).set(cut_documents)

    def close(self) -> None:
        """This process stops serving: with ``--workers N``, its live series leave the shared
        files (a worker restarted by uvicorn would otherwise leave its last values behind)."""
        if _shared():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        if _shared():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _shared() -> bool:
    """Whether the workers of ``serve --workers N`` share their series in files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
