"""The API's metrics with ``serve --workers N``: series shared through files, one set per worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# a worker in a fresh interpreter (prometheus-client picks its shared-file values at import): it
# serves one release, swaps to another, then stops; a second worker reads the shared files
WORKER = """
import sys
from embedlake.api.metrics import Metrics
m = Metrics()
m.serving("production", "r1", "lsa@1", 10)
m.serving("production", "r2", "lsa@1", 12)
sys.stdout.write(m.render().decode() + "\\n=====\\n")
m.close()
sys.stdout.write(Metrics().render().decode())
"""


def test_a_swapped_release_reads_0_and_a_stopped_worker_leaves_the_shared_series(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, env=env, check=True
    ).stdout
    serving, after = out.split("=====")
    info = [line for line in serving.splitlines() if line.startswith("embedlake_release_info{")]
    assert len(info) == 2
    assert any('release="r2"' in line and line.endswith(" 1.0") for line in info), info
    assert any('release="r1"' in line and line.endswith(" 0.0") for line in info), info
    assert "embedlake_release_info{" not in after  # the stopped worker's series are gone
