"""A release's hybrid mode, prepared with the release: BM25 over its passages, built and saved beside
it (so that the first hybrid request does not build it), and its fusion fitted on judged queries
the gate never evaluates on, then recorded in the report (``report["hybrid"]``) for the searcher.

Queries to fit on, per registered dataset: its registered dev and train judgments (train only if
the release's model was not trained on them: fitting on queries the model has learnt would favour
the dense side), else the dev or train queries of the release's own model (a seeded split of the
test judgments, which the gate leaves out for that model). None anywhere: RRF k = 60, unfitted.

Fewer than ``MIN_QUERIES`` queries to fit on (a fine-tuned model whose dev split is a handful):
the fusion of the release behind the gate's alias is kept when that one was fitted, since a
choice among 35 candidates on 3 queries is mostly noise (measured: lisa's fine-tuned release fitted
on 4 dev queries lost 4 points of hybrid nDCG@10 against its base). The candidates' values are
recorded either way.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from embedlake.catalog.releases import ReleaseRecord
from embedlake.errors import NotFound
from embedlake.evaluate import fusion
from embedlake.ingest.datasets import FITTING_SPLITS, Dataset, load_registered
from embedlake.search import bm25_build
from embedlake.search.hybrid import Fusion
from embedlake.search.load import BM25_FOLDER
from embedlake.search.searcher import Searcher, passage_units
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MIN_QUERIES = 10  # fewer judged queries than this to fit on: keep the live release's fusion


def prepare(ws: Workspace, release_id: str) -> float:
    """Build and save the release's BM25, fit its fusion; returns the seconds it took."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    searcher = Searcher(ws, release=release_id)
    version = ws.catalog.documents.version()  # read first: a change while building shows later
    with tempfile.TemporaryDirectory() as tmp:
        # streamed to disk (bounded memory: bm25_build), then memory-mapped for the fitting
        bm25 = bm25_build.build(
            passage_units(ws, searcher.passage_keys()), Path(tmp) / BM25_FOLDER, stem=True
        )
        for path in sorted((Path(tmp) / BM25_FOLDER).iterdir()):
            with path.open("rb") as stream:
                ws.lake.put_file(f"{release.prefix}/{BM25_FOLDER}/{path.name}", stream)
        searcher.use_bm25(bm25)
        sets = fitting_sets(ws, release)
        part: dict[str, Any] = {
            "bm25": {"documents_version": version, "rows": len(bm25.ids)},
            "fusion": Fusion().describe(),
            "fitted_on": [],
        }
        if sets:
            both = [(fusion.sides(searcher, d), d) for d, _ in sets]
            chosen, means = fusion.fit(both)
            part.update(
                fusion=chosen.describe(),
                fitted_on=[
                    {"dataset": d.name, "queries": len(d.queries), "from": how} for d, how in sets
                ],
                candidates={name: round(value, 4) for name, value in means.items()},
            )
    kept = _live_fusion(ws, release_id)
    if sum(len(d.queries) for d, _ in sets) < MIN_QUERIES and kept is not None:
        part.update(fusion=kept[1], kept_from=kept[0])
    log.info(
        "release %s: hybrid fusion %s (%d fitting sets)", release_id, part["fusion"], len(sets)
    )
    latest = ws.catalog.releases.get(release_id)
    ws.catalog.releases.update(release_id, report={**latest.report, "hybrid": part})
    return time.perf_counter() - started


def _live_fusion(ws: Workspace, release_id: str) -> tuple[str, dict[str, Any]] | None:
    """(release id, fusion) of the release behind the gate's alias, if its fusion was fitted."""
    live = ws.catalog.releases.alias(ws.settings.gate.alias)
    if live is None or live == release_id:
        return None
    hybrid = ws.catalog.releases.get(live).report.get("hybrid") or {}
    if not hybrid.get("fitted_on"):
        return None
    return live, dict(hybrid["fusion"])


def fitting_sets(ws: Workspace, release: ReleaseRecord) -> list[tuple[Dataset, str]]:
    """(judged queries to fit on, where they came from) per registered dataset that has any:
    every registered dev and train query the release's model was not trained on, else the
    model's own dev or train queries of a seeded split. Never a query of the gate's judgments."""
    names = ws.settings.gate.datasets or [d.name for d in ws.catalog.benchmarks.list_datasets()]
    trained = ws.catalog.registry.model_by_id(release.model_id).manifest.get("training_data", {})
    out = []
    for name in names:
        test = load_registered(ws, name)
        seen = set(trained.get("train_queries", [])) if trained.get("dataset") == name else set()
        queries: dict[str, str] = {}
        qrels: dict[str, dict[str, int]] = {}
        used = []
        for split in FITTING_SPLITS:
            try:
                other = load_registered(ws, name, split)
            except NotFound:
                continue
            fresh = set(other.queries) - set(test.queries) - seen
            if fresh:
                used.append(split)
                queries.update({q: other.queries[q] for q in fresh})
                qrels.update({q: other.qrels[q] for q in fresh})
        if queries:
            out.append((Dataset(name, queries, qrels), " and ".join(used) + " judgments"))
            continue
        if trained.get("dataset") == name:
            for key in ("dev_queries", "train_queries"):
                keep = sorted(set(trained.get(key, [])) & set(test.queries))
                if keep:
                    out.append((test.only(keep), f"the model's {key.split('_')[0]} queries"))
                    break
    return out
