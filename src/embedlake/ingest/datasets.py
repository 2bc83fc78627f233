"""BEIR-layout evaluation sets: queries.jsonl + qrels/<split>.tsv (+ corpus.jsonl)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedlake.errors import InputError, NotFound
from embedlake.ingest.encoding import decode, too_deep

if TYPE_CHECKING:
    from embedlake.workspace import Workspace

PREFIX = "benchmarks"
FITTING_SPLITS = ("dev", "train")  # in order of preference for fitting on


@dataclass(frozen=True)
class Dataset:
    name: str
    queries: dict[str, str]  # only queries with at least one relevant judgment
    qrels: dict[str, dict[str, int]]  # query id → doc id → grade (ids carry the workspace prefix)

    def only(self, qids: Iterable[str]) -> Dataset:
        """The same dataset with these of its queries (sorted), and their judgments."""
        keep = sorted(set(qids) & self.queries.keys())
        return Dataset(
            self.name, {q: self.queries[q] for q in keep}, {q: self.qrels[q] for q in keep}
        )


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
    try:
        return parse(path.resolve().name, queries.read_bytes(), qrels.read_bytes(), id_prefix)
    except InputError as exc:  # which file was broken (for the judgments: which split's)
        broken = queries if " queries line " in str(exc) else qrels
        raise InputError(f"{broken}: {exc}") from None


def register_beir(
    ws: Workspace, path: Path, *, name: str, id_prefix: str = "", split: str = "test"
) -> Dataset:
    """Copy a BEIR folder's queries and judgments into ``benchmarks/<name>/`` and record it. The
    ``split`` judgments are what the gate evaluates on; a ``train.tsv`` or ``dev.tsv`` beside
    them is kept too (``qrels-train.tsv``, ``qrels-dev.tsv``) for what is fitted on judged
    queries the gate never sees (a release's hybrid fusion)."""
    dataset, extra = check_judgments(path, id_prefix, split)
    prefix = f"{PREFIX}/{name}"
    ws.lake.put(f"{prefix}/queries.jsonl", (path / "queries.jsonl").read_bytes())
    ws.lake.put(f"{prefix}/qrels.tsv", (path / "qrels" / f"{split}.tsv").read_bytes())
    for other in extra:
        ws.lake.put(f"{prefix}/qrels-{other}.tsv", (path / "qrels" / f"{other}.tsv").read_bytes())
    ws.lake.put(
        f"{prefix}/dataset.json",
        json.dumps(
            {"name": name, "id_prefix": id_prefix, "split": split, "other_splits": extra}
        ).encode(),
    )
    ws.catalog.benchmarks.put_dataset(
        name, prefix, len(dataset.queries), sum(len(v) for v in dataset.qrels.values())
    )
    return dataset


def check_registration(ws: Workspace, name: str, id_prefix: str) -> None:
    """Refuse (before anything is ingested) to register dataset ``name`` again with another id
    prefix: its judgments would then point at the other copy's ids, and the benchmark of the
    first copy would be lost without a word."""
    try:
        registered = json.loads(ws.lake.get(f"{PREFIX}/{name}/dataset.json"))
    except NotFound:
        return
    before = registered.get("id_prefix", "") if isinstance(registered, dict) else ""
    if before != id_prefix:
        raise InputError(
            f"benchmark dataset {name!r} is registered for the ids prefixed {before!r}; ingest "
            f"the copy prefixed {id_prefix!r} under another --source to benchmark both"
        )


def check_judgments(
    path: Path, id_prefix: str = "", split: str = "test"
) -> tuple[Dataset, list[str]]:
    """Parse a BEIR folder's ``split`` judgments and any dev or train ones beside them (an
    InputError names the first broken file); the dataset and the other splits found."""
    dataset = load_folder(path, split, id_prefix)
    extra = [s for s in FITTING_SPLITS if s != split and (path / "qrels" / f"{s}.tsv").is_file()]
    for other in extra:
        load_folder(path, other, id_prefix)
    return dataset, extra


def load_registered(ws: Workspace, name: str, split: str | None = None) -> Dataset:
    """The registered dataset's gate judgments, or (``split`` "train" or "dev") the other
    judgments registered with it (NotFound if it has none)."""
    record = ws.catalog.benchmarks.dataset(name)
    qrels = f"{record.prefix}/qrels.tsv" if split is None else f"{record.prefix}/qrels-{split}.tsv"
    try:
        meta = json.loads(ws.lake.get(f"{record.prefix}/dataset.json"))
        if split is not None and split not in meta.get("other_splits", []):
            raise NotFound(f"benchmark dataset {name!r} has no {split} judgments")
        return parse(
            name,
            ws.lake.get(f"{record.prefix}/queries.jsonl"),
            ws.lake.get(qrels),
            meta.get("id_prefix", ""),
        )
    except NotFound as exc:
        if split is not None:
            raise
        raise NotFound(f"benchmark dataset {name!r}: files missing under {record.prefix}/") from exc


def split_copy(
    source: Path, target: Path, *, train: float, dev: float = 0.0, seed: int = 0
) -> dict[str, list[str]]:
    """Copy a BEIR folder that has test judgments only into ``target`` (named like the source, so
    that it registers as the same dataset), moving a seeded share of its judged queries into
    ``qrels/train.tsv`` and ``qrels/dev.tsv``: how to try training splits on a collection that
    ships none. The corpus is linked, not copied. Returns the query ids of each split."""
    import random
    import shutil

    rows = list(
        csv.reader(io.StringIO((source / "qrels" / "test.tsv").read_text()), delimiter="\t")
    )
    header = rows[0] if rows and rows[0][:1] == ["query-id"] else None
    body = rows[1:] if header else rows
    qids = sorted({r[0] for r in body if len(r) == 3})
    random.Random(seed).shuffle(qids)
    n_train, n_dev = round(len(qids) * train), round(len(qids) * dev)
    if n_train < 1 or len(qids) - n_train - n_dev < 1:
        raise InputError(f"{source}: {len(qids)} judged queries are too few to split")
    splits = {
        "train": sorted(qids[:n_train]),
        "dev": sorted(qids[n_train : n_train + n_dev]),
        "test": sorted(qids[n_train + n_dev :]),
    }
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "queries.jsonl", target / "queries.jsonl")
    if (source / "corpus.jsonl").exists() and not (target / "corpus.jsonl").exists():
        (target / "corpus.jsonl").symlink_to((source / "corpus.jsonl").resolve())
    for split, ids in splits.items():
        wanted = set(ids)
        if ids:
            with (target / "qrels" / f"{split}.tsv").open("w", newline="") as out:
                writer = csv.writer(out, delimiter="\t", lineterminator="\n")
                writer.writerows(([header] if header else []) + [r for r in body if r[0] in wanted])
    return splits
