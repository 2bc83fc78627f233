"""BEIR-layout evaluation sets: queries.jsonl + qrels/<split>.tsv (+ corpus.jsonl)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedlake.errors import InputError, NotFound
from embedlake.ingest.encoding import decode, too_deep

if TYPE_CHECKING:
    from embedlake.workspace import Workspace

PREFIX = "benchmarks"


@dataclass(frozen=True)
class Dataset:
    name: str
    queries: dict[str, str]  # only queries with at least one relevant judgment
    qrels: dict[str, dict[str, int]]  # query id → doc id → grade (ids carry the workspace prefix)


MAX_JSON_DEPTH = 64  # of a query line: a query is {"_id", "text", "metadata"?}


def parse(name: str, queries_jsonl: bytes, qrels_tsv: bytes, id_prefix: str = "") -> Dataset:
    """Parse BEIR queries and judgments; judged pairs with identical ids are kept on purpose."""
    qrels = _qrels(name, decode(qrels_tsv, f"{name} qrels"), id_prefix)
    queries: dict[str, str] = {}
    for number, line in enumerate(decode(queries_jsonl, f"{name} queries").splitlines(), start=1):
        if not line.strip():
            continue
        if too_deep(line, MAX_JSON_DEPTH):
            raise InputError(f"{name} queries line {number}: JSON nested too deep")
        try:
            obj = json.loads(line)
            qid, text = str(obj["_id"]), str(obj["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f'{name} queries line {number}: expected {{"_id", "text"}}') from None
        if any(g > 0 for g in qrels.get(qid, {}).values()):
            queries[qid] = text
    if not queries:
        raise InputError(f"{name}: no query has a relevant judgment")
    return Dataset(name, queries, {q: qrels[q] for q in queries})


def _qrels(name: str, text: str, id_prefix: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    number = 0
    try:
        for number, row in enumerate(reader, start=1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise InputError(f"{name} qrels line {number}: expected 3 tab-separated fields")
            try:
                grade = int(float(row[2]))
            except (ValueError, OverflowError):
                raise InputError(
                    f"{name} qrels line {number}: score {row[2]!r} is not a number"
                ) from None
            qrels.setdefault(row[0], {})[id_prefix + row[1]] = grade
    except csv.Error as exc:
        raise InputError(f"{name} qrels line {number + 1}: {exc}") from None
    return qrels


def load_folder(path: Path, split: str = "test", id_prefix: str = "") -> Dataset:
    queries, qrels = path / "queries.jsonl", path / "qrels" / f"{split}.tsv"
    for needed in (queries, qrels):
        if not needed.is_file():
            raise InputError(f"{path} is not a BEIR dataset: {needed.name} is missing")
    return parse(path.resolve().name, queries.read_bytes(), qrels.read_bytes(), id_prefix)


def register_beir(
    ws: Workspace, path: Path, *, name: str, id_prefix: str = "", split: str = "test"
) -> Dataset:
    """Copy a BEIR folder's queries and judgments into ``benchmarks/<name>/`` and record it."""
    dataset = load_folder(path, split, id_prefix)
    prefix = f"{PREFIX}/{name}"
    ws.lake.put(f"{prefix}/queries.jsonl", (path / "queries.jsonl").read_bytes())
    ws.lake.put(f"{prefix}/qrels.tsv", (path / "qrels" / f"{split}.tsv").read_bytes())
    ws.lake.put(
        f"{prefix}/dataset.json",
        json.dumps({"name": name, "id_prefix": id_prefix, "split": split}).encode(),
    )
    ws.catalog.benchmarks.put_dataset(
        name, prefix, len(dataset.queries), sum(len(v) for v in dataset.qrels.values())
    )
    return dataset


def load_registered(ws: Workspace, name: str) -> Dataset:
    record = ws.catalog.benchmarks.dataset(name)
    try:
        meta = json.loads(ws.lake.get(f"{record.prefix}/dataset.json"))
        return parse(
            name,
            ws.lake.get(f"{record.prefix}/queries.jsonl"),
            ws.lake.get(f"{record.prefix}/qrels.tsv"),
            meta.get("id_prefix", ""),
        )
    except NotFound:
        raise NotFound(
            f"benchmark dataset {name!r}: files missing under {record.prefix}/"
        ) from None
