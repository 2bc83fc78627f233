"""HTTP API under load: wrk on loopback against `embedlake serve`, each number beside its anchor.

`embedlake serve WS` (uvicorn, one worker, role all) runs in a subprocess; wrk (`--latency`, a Lua
script that rotates through prepared bodies) drives it from the same machine. Two claims, one
script each; this one runs both (or one, with ``--skip-…``), prints one table and writes
bench/results/api.json:

- bench/api_search.py: ``/v1/search`` over a ~100k-document LSA-384 HNSW index, against the
  in-process index and a bare FastAPI app (bench/api_bare.py);
- bench/api_embed.py: ``/v1/embed`` of 32 MiniLM passages, against a bare ``encode``.

Before each wrk run the load average is kept, and during it the CPU share of other processes
(``other_cpu``); ratios are the median over rounds of the ratio within a round.

    .venv/bin/python bench/api.py [--n 100000] [--duration 10] [--embed-duration 20] [--rounds 3]
                                  [--embed-rounds 3] [--skip-search] [--skip-embed]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import api_bare
import api_embed
import api_search

from _common import table, write_result
from _common.wrk import WRK

HEADERS = ["what", "conns", "req/s (q/s, docs/s)", "p50 ms", "p99 ms", "p99/p50"]
HEADERS += ["vs bare FastAPI", "vs in process"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    api_search.add_arguments(parser)
    api_embed.add_arguments(parser)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    return parser.parse_args(argv)


def report(search: dict[str, Any] | None, embedding: dict[str, Any] | None) -> dict[str, Any]:
    """The table (medians over rounds; ratios are medians of the ratio within each round) and
    the verdicts of both claims, printed; the verdicts returned."""
    rows = api_search.table_rows(search) if search else []
    rows += api_embed.table_rows(embedding) if embedding else []
    print()
    print(table(HEADERS, rows))
    verdicts = {
        **{f"search.{k}": v for k, v in (search or {}).get("verdicts", {}).items()},
        **{f"embed.{k}": v for k, v in (embedding or {}).get("verdicts", {}).items()},
    }
    print()
    for name, v in verdicts.items():
        print(f"{name}: {v['ratio']:.3f} (target {v['target']}) {'met' if v['met'] else 'MISSED'}")
    return verdicts


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) in (3, 4) and argv[0] == "--bare-server":  # the former way to start the anchor
        api_bare.main(argv[1:])
        return
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    if not Path(WRK).exists():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="embedlake-bench-api-") as tmp:
        search = None if args.skip_search else api_search.measure(args, Path(tmp))
        embedding = None if args.skip_embed else api_embed.measure(args, Path(tmp))
    total = time.perf_counter() - started
    verdicts = report(search, embedding)
    print(f"total {total:.0f} s")
    payload = {"total_seconds": total, "settings": dict(vars(args))}
    payload |= {"search": search, "embed": embedding, "verdicts": verdicts}
    write_result("api", payload)


if __name__ == "__main__":
    main()
