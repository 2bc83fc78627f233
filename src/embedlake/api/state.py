"""What a serving process serves, and the hot swap when an alias moves.

Each process follows the aliases it has been asked for (the gate's alias, ``production``, from the
start). A background thread looks at the catalog's aliases every ``api.reload_seconds``; when one
moved (a publish or rollback from the CLI, the API, the runtime or another machine), it loads the new
release (encoder, index, reducer) while requests go on, then swaps one dictionary entry. A request
holds the ``Served`` it started with, so in-flight requests finish on the old release and none fails.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from embedlake.api.batching import Batcher
from embedlake.api.metrics import Metrics
from embedlake.catalog.registry import ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.encoders import Encoder, artifacts
from embedlake.encoders.resolve import encoder_options
from embedlake.errors import EmbedlakeError, InputError, NotFound
from embedlake.serving import Searcher, resolve
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One loaded release (or, before any release exists, the newest index)."""

    key: str  # the release id, or "index:<id>"
    release: ReleaseRecord | None
    model: ModelRecord
    encoder: Encoder
    batcher: Batcher
    searcher: Searcher | None  # None in the embed role, which needs no index

    @property
    def release_id(self) -> str | None:
        return self.release.id if self.release is not None else None


class ServingState:
    def __init__(
        self, ws: Workspace, metrics: Metrics, *, need_index: bool = True, start: bool = True
    ) -> None:
        """``start``: follow the aliases in a background thread (loading the first release there
        too, so probes answer while it loads); without it, load once now and follow no more."""
        self._ws = ws
        self._metrics = metrics
        self._need_index = need_index
        self._api = ws.settings.api
        self.default_alias = ws.settings.gate.alias
        self._followed: dict[str, str] = {}  # alias → key of the Served it answers with
        self._loaded: OrderedDict[str, Served] = OrderedDict()
        self._encoders: dict[int, tuple[Encoder, Batcher]] = {}
        self._load_lock = threading.RLock()  # _load evicts, which takes it again
        self._refresh_lock = threading.Lock()
        self._failed: dict[str, str] = {}  # key → error, logged once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._follow, name="alias-follow", daemon=True)
            self._thread.start()
        else:  # no follower: load what the default alias serves now, once
            self.refresh()

    # -- what requests call --------------------------------------------------------------

    def get(self, *, release: str | None = None, alias: str | None = None) -> Served:
        """The Served for a release id, or for an alias (default: the gate's alias)."""
        if release is not None:
            if alias is not None:
                raise InputError("give release or alias, not both")
            return self._load(release)
        alias = alias or self.default_alias
        key = self._followed.get(alias)
        if key is None:  # first request for this alias: load it now, follow it from here on
            self.refresh(only=alias)
            key = self._followed[alias]
        return self._loaded.get(key) or self._load(key)

    @property
    def ready(self) -> bool:
        return self.default_alias in self._followed

    def serving(self) -> dict[str, str]:
        return dict(self._followed)

    # -- following aliases ---------------------------------------------------------------

    def refresh(self, only: str | None = None) -> None:
        """Look at the aliases now; load and swap to any that moved. Raises for ``only``."""
        with self._refresh_lock:
            aliases = [only] if only else sorted({self.default_alias, *self._followed})
            for alias in aliases:
                try:
                    key = self._target(alias)
                    if key != self._followed.get(alias):
                        self._swap(alias, self._load(key))
                    self._failed.pop(alias, None)
                except EmbedlakeError as exc:
                    if only:
                        raise
                    if self._failed.get(alias) != str(exc):
                        log.error("cannot serve alias %r: %s", alias, exc)
                        self._failed[alias] = str(exc)
            self._evict()

    def _target(self, alias: str) -> str:
        release_id = self._ws.catalog.releases.alias(alias)
        if release_id is not None:
            return release_id
        if alias != self.default_alias:
            raise NotFound(f"alias {alias!r} points to no release")
        # no release published yet: serve the newest index, as `embedlake search` does
        return f"index:{self._ws.catalog.registry.latest_index().id}"

    def _swap(self, alias: str, served: Served) -> None:
        before = self._followed.get(alias)
        self._followed = {**self._followed, alias: served.key}  # one atomic assignment
        vectors = len(served.searcher.index) if served.searcher is not None else 0
        self._metrics.serving(alias, served.release_id or served.key, served.model.ref, vectors)
        if before is not None:
            self._metrics.swaps.labels(alias).inc()
            log.info("alias %r: now serving %s (was %s)", alias, served.key, before)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the follower must outlive any one failure
                log.exception("alias refresh failed")
            self._stop.wait(self._api.reload_seconds)

    # -- loading -------------------------------------------------------------------------

    def _load(self, key: str) -> Served:
        with self._load_lock:
            served = self._loaded.get(key)
            if served is not None:
                self._loaded.move_to_end(key)
                return served
            served = self._build(key)
            self._loaded[key] = served
            self._evict()
            return served

    def _build(self, key: str) -> Served:
        ws = self._ws
        if key.startswith("index:"):
            release, record = None, ws.catalog.registry.index(int(key.split(":", 1)[1]))
        else:
            release, record = resolve(ws, release=key)
        model = ws.catalog.registry.model_by_id(record.model_id)
        encoder, batcher = self._encoder(model)
        searcher = None
        if self._need_index:
            searcher = Searcher(
                ws, release=release.id if release else None, index_id=record.id, encoder=encoder
            )
        log.info("loaded %s (model %s)", key, model.ref)
        return Served(key, release, model, encoder, batcher, searcher)

    def _encoder(self, model: ModelRecord) -> tuple[Encoder, Batcher]:
        cached = self._encoders.get(model.id)
        if cached is None:
            encoder = artifacts.load(self._ws, model, **encoder_options(self._ws, model))
            batch_size = self._ws.settings.embed.batch_size
            batcher = Batcher(
                lambda texts: encoder.encode(texts, batch_size=batch_size),
                max_batch=self._api.max_batch,
                max_wait=self._api.batch_wait_ms / 1000,
                on_batch=self._metrics.batch_size.observe,
            )
            cached = self._encoders[model.id] = (encoder, batcher)
        return cached

    def _evict(self) -> None:
        """Keep the followed releases and the ``max_loaded`` most recent others."""
        with self._load_lock:
            held = set(self._followed.values())
            others = [k for k in self._loaded if k not in held]
            for key in others[: max(0, len(others) - self._api.max_loaded)]:
                del self._loaded[key]  # requests holding it finish with it
            used = {s.model.id for s in self._loaded.values()}
            for model_id in [m for m in self._encoders if m not in used]:
                del self._encoders[model_id]

    def batchers(self) -> list[Batcher]:
        return [b for _, b in self._encoders.values()]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
