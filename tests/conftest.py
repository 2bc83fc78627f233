"""Shared fixtures: workspaces in temporary folders and the team's test collections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedlake import Workspace

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the repository (the team's machines and CI); override for elsewhere.
DATA = Path(os.environ.get("EMBEDLAKE_TEST_DATA", ROOT.parent / "shared" / "data"))


def collection(name: str) -> Path:
    path = DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.fail(
            f"test collection {path} is missing: the tests need ../shared/data beside "
            f"the repository (or EMBEDLAKE_TEST_DATA pointing at it)"
        )
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws", environ={}) as workspace:
        yield workspace


def write_jsonl(path: Path, rows: list[object]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
