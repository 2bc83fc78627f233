"""Each test's CPU time (its worker process and the children it waited for), for finding what a
slow suite spends: a pytest plugin, and a summary of what it wrote.

    rm -rf /tmp/pytest-cpu
    PYTHONPATH=. .venv/bin/pytest -p bench.pytest_cpu -n 4 --dist loadfile --no-loadscope-reorder
    .venv/bin/python bench/pytest_cpu.py /tmp/pytest-cpu     # totals, by file and the top tests

Loaded as ``bench.pytest_cpu``, not with ``bench`` on the path: ``bench/pgvector.py`` would
shadow the pgvector package there. A module-scoped fixture's set-up counts in the first test that
uses it. Servers the suite starts once (PostgreSQL, the S3 endpoint, Ray) are not any test's
children, so they are not counted.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FOLDER = Path(os.environ.get("PYTEST_CPU_DIR", "/tmp/pytest-cpu"))


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    own, children = _cpu()
    started = time.monotonic()
    yield
    own_after, children_after = _cpu()
    FOLDER.mkdir(parents=True, exist_ok=True)
    row = {
        "id": item.nodeid,
        "self": own_after - own,
        "children": children_after - children,
        "wall": time.monotonic() - started,
    }
    with (FOLDER / f"cpu-{os.getpid()}.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER
    rows: list[dict[str, Any]] = [
        json.loads(line) for path in folder.glob("cpu-*.jsonl") for line in path.open()
    ]
    cpu = {r["id"]: r["self"] + r["children"] for r in rows}
    by_file: Counter[str] = Counter()
    for test, seconds in cpu.items():
        by_file[test.split("::")[0]] += seconds
    print(f"{len(rows)} tests, {sum(cpu.values()):.0f} CPU-s")
    for name, seconds in by_file.most_common(15):
        print(f"{seconds:8.1f}  {name}")
    print()
    for test, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{seconds:8.1f}  {test}")


if __name__ == "__main__":
    main()
