"""Another commit of embedlake beside this one: a detached git worktree, first on ``PYTHONPATH``
of the child processes that measure it (the change between two commits as a ratio of one run)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached checkout of ``rev`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="embedlake-against-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), rev], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], check=True)


def env_for(tree: Path | None) -> dict[str, str]:
    """This process's environment, with ``tree``'s sources first on ``PYTHONPATH`` (None: as is)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), env.get("PYTHONPATH", "")])
    return env
