"""Files dropped into the lake from outside: a start-up scan and watchers raise their events.

Both compare with the catalog's record of objects seen, so a file raises ``object.created`` once,
however it arrived (an embedlake write, a ``cp`` while the runtime ran, or one while it was down).
The event id derives from the key and content hash, so the watcher and the writer racing for the same
file produce one event (:func:`~embedlake.runtime.core.record_object`). :class:`Loop` is the thread
every watcher is, here and in :mod:`~embedlake.runtime.s3events`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from watchfiles import Change, watch

from embedlake.runtime.core import forget_object, record_object
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


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
                found += record_object(ws, info.key)
        for key in set(seen) - present:
            found += forget_object(ws, key)
    return found


class Loop(threading.Thread):
    """A daemon thread that ends when asked (``stop``), whatever it watches."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()


class Watcher(Loop):
    """Watches a local lake folder (a remote lake has ``s3events``: scans and notifications)."""

    def __init__(self, ws: Workspace, prefixes: list[str]) -> None:
        super().__init__("embedlake-watcher")
        self._ws = ws
        self._prefixes = prefixes
        local = ws.lake.local_path("x")
        self.root = Path(local).parent if local else None

    def run(self) -> None:
        """Watch until stopped. A failure of the watch itself (watchfiles cannot name a file
        whose name is not UTF-8, and raises) is logged and the watch begins again, after a scan
        for what arrived meanwhile: it once ended the thread, and nothing was ingested after."""
        if self.root is None:
            return
        while not self._halt.is_set():
            try:
                self._watch()
            except Exception:
                log.exception("watcher: the watch of %s failed; watching again", self.root)
                if self._halt.wait(1.0):
                    return
                try:
                    scan(self._ws, self._prefixes)
                except Exception:
                    log.exception("watcher: the scan after a failed watch failed")

    def _watch(self) -> None:
        assert self.root is not None
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
                            record_object(self._ws, key)
                        except Exception:  # keep watching; the start-up scan is the safety net
                            log.exception("watcher: could not record %s", key)
