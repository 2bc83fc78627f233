"""What a serving process serves, and the hot swap when an alias moves.

Each process follows the aliases it has been asked for (the gate's alias, ``production``, from the
start). A background thread looks at the catalog's aliases whenever a serving change is announced
(an alias move or a rebuilt index: catalog/announce.py; heard through catalog/wake.py, from this
process, over PostgreSQL's LISTEN, or by watching a SQLite catalog's files), and at the latest
every ``api.reload_seconds``. When an alias moved (a publish or rollback from the CLI, the API, the
runtime or another machine), it loads the new release (encoder, index, reducer) while requests go
on, then swaps one dictionary entry. A request holds the ``Served`` it started with, so in-flight
requests finish on the old release and none fails.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from embedlake.api.batching import Batcher
from embedlake.api.metrics import Metrics
from embedlake.catalog.announce import SERVING
from embedlake.catalog.changes import watch
from embedlake.catalog.registry import ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.catalog.wake import Wake
from embedlake.embeddings.passages import Chunking, Splitter
from embedlake.encoders import Encoder, token_window
from embedlake.errors import EmbedlakeError, InputError, NotFound
from embedlake.models import artifacts
from embedlake.reduce import maps
from embedlake.reduce.maps import MapData
from embedlake.search.load import resolve
from embedlake.search.searcher import Searcher
from embedlake.search.summaries import Summaries
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One loaded release (or, before any release exists, the newest index)."""

    key: str  # "<release id>@<index id>", or "index:<id>" before any release exists
    release: ReleaseRecord | None
    model: ModelRecord
    encoder: Encoder
    batcher: Batcher
    searcher: Searcher | None  # None in the embed role, which needs no index
    splitter: Splitter  # how the release splits a text longer than the window
    _map: MapData | None = None
    _map_tombstones: tuple[int, str] | None = None  # the deletions the map left out
    _map_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def release_id(self) -> str | None:
        return self.release.id if self.release is not None else None

    def map(self, ws: Workspace) -> MapData:
        """The release's map, built on first use, and again once a document was deleted (or
        came back) since: a deleted document leaves the map in every serving process."""
        with self._map_lock:
            tombstones = ws.catalog.documents.tombstones()
            if self._map is None or tombstones != self._map_tombstones:
                if self.release is None or self.searcher is None:
                    raise NotFound("no map: maps belong to releases (`embedlake release`)")
                self._map_tombstones = tombstones
                self._map = maps.build(
                    ws,
                    self.release.id,
                    self.release.prefix,
                    self.searcher.index,
                    ws.settings.map.place_k,
                )
            return self._map


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
        # what requests are answered with: per alias, and per release asked for by id (least
        # recently used first). A Served's key names a release *and* its index, because a
        # release's index is rebuilt in place when new documents arrive.
        self._followed: dict[str, Served] = {}
        self._pinned: OrderedDict[str, Served] = OrderedDict()
        self._encoders: dict[int, tuple[Encoder, Batcher]] = {}
        # results' titles and snippets, kept in memory for every release this process serves
        self.summaries = Summaries(
            ws.catalog.documents, watch(ws.catalog.engine), self._api.summary_cache
        )
        self._lock = threading.RLock()  # loading, and any change to _pinned
        self._refresh_lock = threading.Lock()
        self._failed: dict[str, str] = {}  # alias → error, logged once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: Wake | None = None
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
            with self._lock:
                served = self._pinned.get(release)
                if served is not None:
                    self._pinned.move_to_end(release)  # recently used: kept longest
                    return served
            loaded = self._obtain(self._release_key(release))  # slow: outside the lock
            with self._lock:
                served = self._pinned.setdefault(release, loaded)
                self._evict()
                return served
        alias = alias or self.default_alias
        served = self._followed.get(alias)
        if served is None:  # first request for this alias: load it now, follow it from here on
            self.refresh(only=alias)
            served = self._followed[alias]
        return served

    def loaded(self, alias: str | None = None) -> Served | None:
        """What an alias (default: the gate's) serves, if this process has loaded it already."""
        return self._followed.get(alias or self.default_alias)

    async def aget(self, *, release: str | None = None, alias: str | None = None) -> Served:
        """``get`` for a request: answered at once when loaded, else in the thread pool (a load
        takes seconds and must not block the event loop)."""
        loaded = self.loaded(alias) if release is None else None
        if loaded is not None:
            return loaded
        return await run_in_threadpool(lambda: self.get(release=release, alias=alias))

    @property
    def ready(self) -> bool:
        return self.default_alias in self._followed

    def serving(self) -> dict[str, str]:
        """alias → the release (or ``index:<id>``) it serves."""
        return {a: s.release_id or s.key for a, s in self._followed.items()}

    # -- following aliases and releases --------------------------------------------------

    def refresh(self, only: str | None = None) -> None:
        """Look at the catalog now; load and swap to any alias that moved, and any served
        release whose index was rebuilt. Raises for ``only`` (an alias)."""
        with self._refresh_lock:
            aliases = [only] if only else sorted({self.default_alias, *self._followed})
            for alias in aliases:
                try:
                    key = self._alias_key(alias)
                    current = self._followed.get(alias)
                    if current is None or current.key != key:
                        self._swap(alias, self._obtain(key))
                    self._failed.pop(alias, None)
                except EmbedlakeError as exc:
                    if only:
                        raise
                    if self._failed.get(alias) != str(exc):
                        log.error("cannot serve alias %r: %s", alias, exc)
                        self._failed[alias] = str(exc)
            with self._lock:
                pinned = list(self._pinned.items()) if not only else []
            for release, served in pinned:
                try:
                    key = self._release_key(release)
                except NotFound:  # removed by retention: the old one serves until evicted
                    continue
                if key != served.key:
                    fresh = self._obtain(key)
                    with self._lock:
                        if release in self._pinned:
                            self._pinned[release] = fresh
            with self._lock:
                self._evict()

    def _alias_key(self, alias: str) -> str:
        release_id = self._ws.catalog.releases.alias(alias)
        if release_id is not None:
            return self._release_key(release_id)
        if alias != self.default_alias:
            raise NotFound(f"alias {alias!r} points to no release")
        # no release published yet: serve the newest index, as `embedlake search` does
        return f"index:{self._ws.catalog.registry.latest_index().id}"

    def _release_key(self, release_id: str) -> str:
        release = self._ws.catalog.releases.get(release_id)
        if release.index_id is None:
            raise NotFound(f"release {release_id} has no index yet (it is {release.status})")
        return f"{release_id}@{release.index_id}"

    def _swap(self, alias: str, served: Served) -> None:
        before = self._followed.get(alias)
        self._followed = {**self._followed, alias: served}  # one atomic assignment
        vectors = len(served.searcher.index) if served.searcher is not None else 0
        cut = served.release.report.get("passages", {}) if served.release is not None else {}
        self._metrics.serving(
            alias,
            served.release_id or served.key,
            served.model.ref,
            vectors,
            int(cut.get("cut_documents", 0)),
        )
        if before is not None:
            self._metrics.swaps.labels(alias).inc()
            log.info("alias %r: now serving %s (was %s)", alias, served.key, before.key)
        # the map, when this process starts serving or when the one it replaces was asked for
        # (not at every swap of a server whose map nobody opens)
        in_use = before is None or before._map is not None
        if served.searcher is not None and served.release is not None and in_use:
            threading.Thread(target=self._warm_map, args=(served,), daemon=True).start()

    def _warm_map(self, served: Served) -> None:
        """Build the map of a release now served, and its colours by the field the page opens
        with: at a million points the first page load waited 17 s for them (docs/benchmarks.md,
        section 18)."""
        assert served.release is not None
        fitted = served.release.report.get("map")
        if not fitted:
            return
        try:
            found = served.map(self._ws)
            found.labels(self._ws, fitted.get("default_field", "source"))
        except Exception:  # a request will build it again and say what is wrong
            log.exception("could not prepare the map of %s", served.key)

    def _follow(self) -> None:
        # made here, not in __init__: a SQLite watch or a LISTEN connection per follower only
        wake = Wake(self._ws.catalog.engine, SERVING, watch_file=True)
        self._wake = wake
        try:
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception:  # the follower must outlive any one failure
                    log.exception("alias refresh failed")
                wake.wait(self._api.reload_seconds)
        finally:
            wake.close()

    # -- loading -------------------------------------------------------------------------

    def _obtain(self, key: str) -> Served:
        """The loaded Served for ``key``, shared when an alias and a pin (or two aliases) serve
        the same release, else a new one."""
        with self._lock:
            for served in (*self._followed.values(), *self._pinned.values()):
                if served.key == key:
                    return served
        return self._build(key)

    def _build(self, key: str) -> Served:
        ws = self._ws
        if key.startswith("index:"):
            release_id, index_id = None, int(key.split(":", 1)[1])
        else:
            release_id, _, index = key.partition("@")
            index_id = int(index)
        release, record = resolve(ws, release=release_id, index_id=index_id)
        model = ws.catalog.registry.model_by_id(record.model_id)
        encoder, batcher = self._encoder(model)
        searcher = None
        if self._need_index:
            searcher = Searcher(
                ws,
                release=release_id,
                index_id=record.id,
                encoder=encoder,
                summaries=self.summaries,
            )
        splitter = (
            searcher.splitter()
            if searcher is not None
            else Splitter(
                Chunking.from_key(str(record.params.get("chunker", ""))), token_window(encoder)
            )
        )
        log.info("loaded %s (model %s)", key, model.ref)
        return Served(key, release, model, encoder, batcher, searcher, splitter)

    def _encoder(self, model: ModelRecord) -> tuple[Encoder, Batcher]:
        cached = self._encoders.get(model.id)
        if cached is None:
            encoder = artifacts.load_encoder(self._ws, model)
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
        """Forget the least recently used releases past ``max_loaded``, and encoders no served
        release uses (requests holding one finish with it). Called with the lock held."""
        while len(self._pinned) > self._api.max_loaded:
            self._pinned.popitem(last=False)
        used = {s.model.id for s in (*self._followed.values(), *self._pinned.values())}
        for model_id in [m for m in self._encoders if m not in used]:
            _, batcher = self._encoders.pop(model_id)
            batcher.retire()

    def batchers(self) -> list[Batcher]:
        return [b for _, b in self._encoders.values()]

    def close(self) -> None:
        self._stop.set()
        if self._wake is not None:
            self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.summaries.close()
