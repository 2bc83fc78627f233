"""A measurement in a process of its own: a script run in its child mode, whose last line of
output is its result as a JSON object (so imports, caches and peak memory start afresh)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any


def child_result(script: str, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``script`` with ``args`` under this interpreter (``env``: its environment, None: this
    one's) and return the JSON object its last line of output prints."""
    out = subprocess.run(
        [sys.executable, script, *args],
        check=True,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
