"""The BEIR collections the benchmarks read (under DATA), read line by line and sliced."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DATA = Path(os.environ.get("EMBEDLAKE_BENCH_DATA", "/work/shared/data"))


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file, blank lines skipped."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def corpus(collection: str) -> Iterator[dict[str, Any]]:
    """The documents of a collection's corpus.jsonl."""
    return read_jsonl(DATA / collection / "corpus.jsonl")


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def write_lines(source: Path, path: Path, stop: int, start: int = 0) -> Path:
    """Lines ``start`` to ``stop`` (not included) of ``source``, written to ``path``."""
    with source.open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as dst:
        for n, line in enumerate(src):
            if n >= stop:
                break
            if n >= start:
                dst.write(line)
    return path


def real_queries(collections: Sequence[str], count: int) -> list[str]:
    """Up to ``count`` query texts, taken round-robin from the collections' queries.jsonl."""
    pools = [
        [q["text"] for q in read_jsonl(DATA / c / "queries.jsonl") if q.get("text", "").strip()]
        for c in collections
        if (DATA / c / "queries.jsonl").is_file()
    ]
    out: list[str] = []
    for i in range(max((len(p) for p in pools), default=0)):
        out += [p[i] for p in pools if i < len(p)]
    return out[:count]
