"""Questions about the whole documents table in a large catalog, with the indexes that answer them
against the catalog before those indexes: the deleted documents (``Documents.deleted_ids``, what a
release's map asks; the partial index of tombstones, migration 0009, against 0008) or the
documents' version (``Documents.version``, what a release's BM25 records and a server compares;
``--query version``: the indexes of migration 0010, against 0009).

The catalog of an ingested workspace (``bench/scale.py --until ingest --keep DIR``, at the anchor's
revision or before) is
copied twice; ``--delete`` of its documents are deleted in each; one copy is migrated to the
anchor's revision (a scan of the documents table, texts included), the other to the head. Each
round drops the page cache (root only; otherwise the rounds are warm, and say so) and times the
query on both, alternating; then the same warm. Also timed: the migration from the anchor to the
head. Each side's answer is checked: the same deleted ids, or its own rows' aggregate (the
version's value before 0010).

    .venv/bin/python bench/tombstones.py --workspace /tmp/s1m/ws --delete 1000 --rounds 3
    .venv/bin/python bench/tombstones.py --workspace /tmp/s1m/ws --query version --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from embedlake.catalog import migrate, open_catalog
from embedlake.catalog.schema import documents

from _common import median, table, write_result


def _drop_cache() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


# the documents' version as it was computed before migration 0010: an aggregate over every row
VERSION_SCAN = select(
    func.count(), func.max(documents.c.updated_at), func.max(documents.c.deleted_at)
)
ANCHORS = {"deleted_ids": "0008", "version": "0009"}  # the revision before the query's indexes


def _timed(url: str, query: str) -> tuple[float, Any]:
    catalog = open_catalog(url)
    try:
        started = time.perf_counter()
        found = getattr(catalog.documents, query)()
        return time.perf_counter() - started, found
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="an ingested workspace")
    parser.add_argument("--delete", type=int, default=1000, help="documents to delete")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--query", choices=sorted(ANCHORS), default="deleted_ids")
    args = parser.parse_args()
    anchor = ANCHORS[args.query]
    with tempfile.TemporaryDirectory(dir=args.workspace.parent) as tmp:
        urls = {}
        for side in (anchor, "head"):
            path = Path(tmp) / f"{side}.db"
            shutil.copyfile(args.workspace / "catalog.db", path)
            urls[side] = f"sqlite:///{path}"
        at = migrate.current(create_engine(urls[anchor]))
        if at is None or int(at) > int(anchor):
            raise SystemExit(
                f"the workspace's catalog is at {at}: it must be at {anchor} or before"
            )
        migrate.upgrade(create_engine(urls[anchor]), anchor)
        migrate.upgrade(create_engine(urls["head"]), anchor)
        started = time.perf_counter()
        migrate.upgrade(create_engine(urls["head"]))
        migration_s = time.perf_counter() - started
        with create_engine(urls[anchor]).connect() as conn:
            ids = sorted(r[0] for r in conn.exec_driver_sql(
                f"SELECT id FROM documents ORDER BY random() LIMIT {args.delete}"
            ))  # fmt: skip
        expected = {}  # what each side must answer: the same ids; its own rows' aggregate
        for side, url in urls.items():
            catalog = open_catalog(url)
            for doc_id in ids:
                catalog.documents.delete(doc_id)
            with catalog.engine.connect() as conn:
                row = conn.execute(VERSION_SCAN).one()
            expected[side] = set(ids) if args.query == "deleted_ids" else "|".join(map(str, row))
            catalog.close()
        results: dict[str, Any] = {
            "query": args.query,
            "anchor": anchor,
            "migration_s": migration_s,
            "deleted": args.delete,
        }
        for warm in (False, True):
            times: dict[str, list[float]] = {side: [] for side in urls}
            dropped = True
            for r in range(args.rounds):
                for side in list(urls)[r % 2 :] + list(urls)[: r % 2]:
                    if not warm:
                        dropped = _drop_cache() and dropped
                    seconds, found = _timed(urls[side], args.query)
                    if found != expected[side]:
                        raise SystemExit(f"{side} answered {found!r}, not {expected[side]!r}")
                    times[side].append(seconds)
            key = "warm" if warm else ("cold" if dropped else "not dropped (needs root)")
            results[key] = {side: {"median_s": median(v), "runs": v} for side, v in times.items()}
    rows = [
        [key, f"{r[anchor]['median_s']:.3f}", f"{r['head']['median_s']:.4f}",
         f"{r[anchor]['median_s'] / r['head']['median_s']:.0f}×"]
        for key, r in results.items() if isinstance(r, dict)
    ]  # fmt: skip
    print(table(["page cache", f"{anchor}: a scan (s)", "head: the index (s)", "faster"], rows))
    print(f"migration from {anchor} to the head on this catalog: {migration_s:.1f} s")
    write_result("tombstones" if args.query == "deleted_ids" else f"catalog_{args.query}", results)


if __name__ == "__main__":
    main()
