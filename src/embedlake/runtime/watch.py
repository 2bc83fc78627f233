"""Files dropped into the lake from outside: a start-up scan and watchers raise their events.

Both compare with the catalog's record of objects seen, so a file raises ``object.created`` once,
however it arrived (an embedlake write, a ``cp`` while the runtime ran, or one while it was down).
The event id derives from the key and content hash, so the watcher and the writer racing for the same
file produce one event.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from watchfiles import Change, watch

from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, Event
from embedlake.lake import created_event_id
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


def _record(ws: Workspace, key: str) -> bool:
    """Raise object.created for ``key`` unless it was seen with the same content."""
    try:
        info = ws.lake.info(key)
    except Exception:
        return False
    if ws.catalog.events.seen(key).get(key, ("", 0))[0] == info.etag:
        return False
    with ws.catalog.begin():
        ws.catalog.events.add(
            Event(
                OBJECT_CREATED,
                key,
                {"size": info.size, "etag": info.etag},
                id=created_event_id(key, info.etag),
            )
        )
        ws.catalog.events.mark_seen(key, info.etag, info.size)
    log.info("found %s", key)
    return True


def scan(ws: Workspace, prefixes: list[str]) -> int:
    """Raise events for objects that appeared or changed while nobody watched; returns a count."""
    found = 0
    for prefix in prefixes:
        seen = ws.catalog.events.seen(prefix)
        present = set()
        for info in ws.lake.list(prefix):
            present.add(info.key)
            if (
                info.key not in seen
                or seen[info.key][1] != info.size
                or not info.etag
                or info.etag != seen[info.key][0]
            ):
                found += _record(ws, info.key)
        for key in set(seen) - present:
            found += _forget(ws, key)
    return found


def _forget(ws: Workspace, key: str) -> bool:
    """Raise object.removed for ``key`` unless it is not (or no longer) known as present.

    Checked inside the transaction: a scan and a bucket notification noticing the same removal
    raise one event.
    """
    with ws.catalog.begin():
        known = ws.catalog.events.seen(key).get(key)
        if known is None:
            return False
        ws.catalog.events.add(Event(OBJECT_REMOVED, key, {"size": known[1], "etag": known[0]}))
        ws.catalog.events.forget_seen(key)
    log.info("gone: %s", key)
    return True


class Loop(threading.Thread):
    """A daemon thread that ends when asked (``stop``), whatever it watches."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()


def watchers(ws: Workspace, prefixes: list[str]) -> list[Loop]:
    """The threads that notice objects others write: a folder watcher for a local lake; periodic
    scans and, when configured, the bucket's notifications for a remote one."""
    if ws.lake.local_path("x") is not None:
        return [Watcher(ws, prefixes)]
    from embedlake.runtime.s3events import remote_watchers

    return remote_watchers(ws, prefixes)


class Watcher(Loop):
    """Watches a local lake folder (a remote lake has ``s3events``: scans and notifications)."""

    def __init__(self, ws: Workspace, prefixes: list[str]) -> None:
        super().__init__("embedlake-watcher")
        self._ws = ws
        self._prefixes = prefixes
        local = ws.lake.local_path("x")
        self.root = Path(local).parent if local else None

    def run(self) -> None:
        if self.root is None:
            return
        for changes in watch(
            self.root,
            stop_event=self._halt,
            debounce=50,
            step=20,
            recursive=True,
            raise_interrupt=False,
        ):
            for change, path in changes:
                if change == Change.deleted:
                    continue
                found = Path(path)
                # A file written right after its folder was made can land before the watch on
                # the new folder exists: look inside every folder that appears.
                for file in sorted(found.rglob("*")) if found.is_dir() else [found]:
                    key = file.relative_to(self.root).as_posix()
                    if (
                        file.is_file()
                        and not file.name.startswith(".tmp-")
                        and any(key.startswith(p) for p in self._prefixes)
                    ):
                        try:
                            _record(self._ws, key)
                        except Exception:  # keep watching; the start-up scan is the safety net
                            log.exception("watcher: could not record %s", key)
