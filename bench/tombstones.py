"""Finding the deleted documents (``Documents.deleted_ids``, what a release's map asks) in a large
catalog: with the partial index of tombstones (migration 0009) against the catalog before it.

The catalog of an ingested workspace (``bench/scale.py --until ingest --keep DIR``) is copied
twice; ``--delete`` of its documents are deleted in each; one copy stays at migration 0008 (the
anchor: a scan of the documents table, texts included), the other is migrated to the head. Each
round drops the page cache (root only; otherwise the rounds are warm, and say so) and times
``deleted_ids`` on both, alternating; then the same warm. Also timed: the migration itself.

    .venv/bin/python bench/tombstones.py --workspace /tmp/s1m/ws --delete 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from embedlake.catalog import migrate, open_catalog

from _common import median, table, write_result


def _drop_cache() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _timed(url: str) -> tuple[float, int]:
    catalog = open_catalog(url)
    try:
        started = time.perf_counter()
        found = catalog.documents.deleted_ids()
        return time.perf_counter() - started, len(found)
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="an ingested workspace")
    parser.add_argument("--delete", type=int, default=1000, help="documents to delete")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workspace.parent) as tmp:
        urls = {}
        for side in ("0008", "head"):
            path = Path(tmp) / f"{side}.db"
            shutil.copyfile(args.workspace / "catalog.db", path)
            urls[side] = f"sqlite:///{path}"
        if migrate.current(create_engine(urls["0008"])) != "0008":
            raise SystemExit("the workspace's catalog must be at migration 0008 (made before 0009)")
        started = time.perf_counter()
        migrate.upgrade(create_engine(urls["head"]))
        migration_s = time.perf_counter() - started
        for url in urls.values():
            catalog = open_catalog(url)
            with catalog.engine.connect() as conn:
                ids = [r[0] for r in conn.exec_driver_sql(
                    f"SELECT id FROM documents ORDER BY random() LIMIT {args.delete}"
                )]  # fmt: skip
            for doc_id in sorted(ids):
                catalog.documents.delete(doc_id)
            catalog.close()
        results: dict[str, Any] = {"migration_s": migration_s, "deleted": args.delete}
        for warm in (False, True):
            times: dict[str, list[float]] = {side: [] for side in urls}
            dropped = True
            for r in range(args.rounds):
                for side in list(urls)[r % 2 :] + list(urls)[: r % 2]:
                    if not warm:
                        dropped = _drop_cache() and dropped
                    seconds, found = _timed(urls[side])
                    if found != args.delete:
                        raise SystemExit(f"{side}: {found} deleted ids, not {args.delete}")
                    times[side].append(seconds)
            key = "warm" if warm else ("cold" if dropped else "not dropped (needs root)")
            results[key] = {side: {"median_s": median(v), "runs": v} for side, v in times.items()}
    rows = [
        [key, f"{r['0008']['median_s']:.3f}", f"{r['head']['median_s']:.4f}",
         f"{r['0008']['median_s'] / r['head']['median_s']:.0f}×"]
        for key, r in results.items() if isinstance(r, dict)
    ]  # fmt: skip
    print(table(["page cache", "0008: a scan (s)", "0009: the index (s)", "faster"], rows))
    print(f"migration to 0009 on this catalog: {migration_s:.1f} s")
    write_result("tombstones", results)


if __name__ == "__main__":
    main()
