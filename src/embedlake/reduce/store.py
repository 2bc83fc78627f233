"""A release's reducer (PCA), read back from the lake."""

from __future__ import annotations

import tempfile
from pathlib import Path

from embedlake.catalog.releases import ReleaseRecord
from embedlake.errors import NotFound
from embedlake.reduce.pca import PcaReducer
from embedlake.workspace import Workspace


def load_reducer(ws: Workspace, release: ReleaseRecord) -> PcaReducer | None:
    """The release's PCA when it backs the release's index, else None."""
    if not release.report.get("reducer", {}).get("backs_index"):
        return None
    return read_reducer(ws, release)


def read_reducer(ws: Workspace, release: ReleaseRecord) -> PcaReducer:
    """The PCA every release fits (it backs the index only if configured so)."""
    if not ws.lake.exists(f"{release.prefix}/reducer/pca_components.npy"):
        raise NotFound(f"release {release.id} has no reducer yet (it is {release.status})")
    with tempfile.TemporaryDirectory() as tmp:
        for info in ws.lake.list(f"{release.prefix}/reducer"):
            (Path(tmp) / info.key.rsplit("/", 1)[1]).write_bytes(ws.lake.get(info.key))
        return PcaReducer.load(Path(tmp))
