"""Catalog rows kept as records in the lake (``catalog.journal``): indexes, benchmark results,
releases and alias moves, with their ids; and the folders no record names."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from embedlake.catalog import journal
from embedlake.catalog import schema as t
from embedlake.recover.rows import Rows
from embedlake.workspace import Workspace


def journalled(ws: Workspace, keys: list[str], rows: Rows) -> None:
    def read(prefix: str, dates: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            journal.decode(ws.lake.get(k), dates)
            for k in keys
            if k.startswith(f"{prefix}/") and k.endswith(".json")
        ]

    indexes = _indexes(ws, read(journal.INDEXES, ("created_at",)), rows)
    for result in read(journal.RESULTS, ("created_at",)):
        model = rows.models.get(result.pop("model") or "")
        result["model_id"] = model[0] if model else None
        result["index_id"] = result["index_id"] if result["index_id"] in indexes else None
        rows.add(t.benchmark_results, result)
    releases = _releases(read(journal.RELEASES, ("created_at", "finished_at")), indexes, rows)
    _aliases(read(journal.ALIASES, ("at",)), releases, rows)


def _indexes(ws: Workspace, records: list[dict[str, Any]], rows: Rows) -> set[int]:
    """Index records whose model and files are there (and, for pgvector, whose vectors table is:
    it lives in the catalog database, so a lost database took it along)."""
    with ws.catalog.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    kept = set()
    for record in records:
        model = rows.models.get(record.pop("model"))
        where = f"index {record['id']} ({record['prefix']}/)"
        if model is None:
            rows.lost.append(f"{where}: its model is not recovered")
        elif not any(True for _ in ws.lake.list(record["prefix"])):
            rows.lost.append(f"{where}: its files are not in the lake")
        elif record["engine"] == "pgvector" and record["params"].get("table") not in tables:
            rows.lost.append(
                f"{where}: its vectors were kept in the lost database; build the index again"
            )
        else:
            rows.add(t.indexes, {**record, "model_id": model[0]})
            kept.add(record["id"])
    return kept


def _releases(records: list[dict[str, Any]], indexes: set[int], rows: Rows) -> set[str]:
    kept = set()
    for record in records:
        model = rows.models.get(record.pop("model"))
        if model is None:
            rows.lost.append(f"release {record['id']}: its model is not recovered")
            continue
        if record["index_id"] is not None and record["index_id"] not in indexes:
            rows.lost.append(f"release {record['id']}: index {record['index_id']} is not recovered")
            record["index_id"] = None
        rows.add(t.releases, {**record, "model_id": model[0]})
        kept.add(record["id"])
    return kept


def _aliases(moves: list[dict[str, Any]], releases: set[str], rows: Rows) -> None:
    last: dict[str, dict[str, Any]] = {}
    for move in sorted(moves, key=lambda m: int(m["id"])):
        rows.add(t.alias_moves, move)
        last[move["alias"]] = move
    for name, move in sorted(last.items()):
        if move["to_release"] not in releases:
            rows.lost.append(f"alias {name}: its release {move['to_release']} is not recovered")
            continue
        rows.add(
            t.aliases, {"name": name, "release_id": move["to_release"], "moved_at": move["at"]}
        )


def orphans(by_prefix: dict[str, list[str]], rows: Rows) -> None:
    """Folders the lake holds that no record names (written before records were kept)."""
    named = {r["id"] for r in rows.tables[t.releases.name]}
    folders = {k.split("/")[1] for k in by_prefix["releases"] if k.count("/") >= 2}
    for release_id in sorted(folders - named):
        rows.lost.append(
            f"release {release_id}: releases/{release_id}/ holds its files but the lake has no "
            f"record of it ({journal.RELEASES}/); build it again"
        )
    indexed = {r["prefix"] for r in rows.tables[t.indexes.name]}
    lost = {"/".join(k.split("/")[:4]) for k in by_prefix["indexes"] if k.count("/") >= 4}
    for prefix in sorted(lost - indexed):
        if not any(line.find(f"({prefix}/)") >= 0 for line in rows.lost):
            rows.lost.append(f"index folder {prefix}/: the lake has no record of it")
