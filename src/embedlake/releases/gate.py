"""The gate: a release is benchmarked against the release behind the alias, on the same datasets
and the same queries, and passes only if every rule of the policy holds.

The one place where the held-out queries are chosen (never the queries a model in play was trained
on) and a release is judged against another: the build's benchmark stage, a publish that has to
gate again (the alias moved since the build) and ``compare`` all call :func:`judge` or its parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from embedlake.catalog.releases import ReleaseRecord
from embedlake.config import GateSettings
from embedlake.evaluate.bench import Result, bench_index
from embedlake.ingest.datasets import Dataset, load_registered
from embedlake.reduce.store import load_reducer
from embedlake.workspace import Workspace


@dataclass(frozen=True)
class Judgement:
    """A candidate benchmarked against the release it would replace (None: the first release)."""

    against: ReleaseRecord | None
    candidate: list[Result]
    production: list[Result] | None
    decision: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    rule: str
    dataset: str
    value: float
    threshold: float
    passed: bool

    @property
    def margin(self) -> float:
        return self.value - self.threshold


def held_out(ws: Workspace, *model_ids: int) -> dict[str, list[str]]:
    """dataset → query ids that one of these models was trained on (never used by the gate)."""
    out: dict[str, list[str]] = {}
    for model_id in model_ids:
        data = ws.catalog.registry.model_by_id(model_id).manifest.get("training_data", {})
        if data.get("dataset") and data.get("train_queries"):
            out.setdefault(data["dataset"], []).extend(data["train_queries"])
    return out


def judge(ws: Workspace, release: ReleaseRecord, against: ReleaseRecord | None) -> Judgement:
    """Benchmark ``release`` and ``against`` on the same held-out queries, and apply the policy."""
    ids = [release.model_id] + ([against.model_id] if against else [])
    datasets = gate_datasets(ws, held_out(ws, *ids))
    ours = benchmark(ws, release, datasets)
    theirs = benchmark(ws, against, datasets) if against else None
    return Judgement(against, ours, theirs, decide(ws.settings.gate, ours, theirs))


def gate_datasets(ws: Workspace, held_out: dict[str, list[str]]) -> list[Dataset]:
    """Registered datasets, without the queries any model in play was trained on."""
    names = ws.settings.gate.datasets or [d.name for d in ws.catalog.benchmarks.list_datasets()]
    out = []
    for name in names:
        dataset = load_registered(ws, name)
        trained = set(held_out.get(name, []))
        if trained:
            keep = {q: t for q, t in dataset.queries.items() if q not in trained}
            dataset = Dataset(name, keep, {q: dataset.qrels[q] for q in keep})
        out.append(dataset)
    return out


def benchmark(ws: Workspace, release: ReleaseRecord, datasets: list[Dataset]) -> list[Result]:
    registry = ws.catalog.registry
    model = registry.model_by_id(release.model_id)
    assert release.index_id is not None
    record = registry.index(release.index_id)
    reducer = load_reducer(ws, release)
    return [
        bench_index(ws, d, model, record, system=release.id, reducer=reducer)
        for d in datasets
        if d.queries
    ]


def decide(
    policy: GateSettings, candidate: list[Result], production: list[Result] | None
) -> dict[str, Any]:
    """Every rule with its value, threshold, margin and verdict; passed if all pass."""
    rules: list[Rule] = []
    for result in candidate:
        recall = result.metrics["ann_recall@10"]
        rules.append(
            Rule(
                "ann_recall@10 ≥ min_ann_recall",
                result.dataset,
                recall,
                policy.min_ann_recall,
                recall >= policy.min_ann_recall,
            )
        )
    if production is None:
        return {"passed": True, "first_release": True, "rules": [_row(r) for r in rules]}
    if not candidate:
        # Nothing to compare on: publishing blind would defeat the gate.
        return {
            "passed": False,
            "first_release": False,
            "rules": [],
            "note": "no benchmark dataset is registered: ingest a BEIR folder (or publish "
            "with --force)",
        }
    theirs = {r.dataset: r.metrics["ndcg@10"] for r in production}
    for result in candidate:
        if result.dataset in theirs:
            threshold = theirs[result.dataset] - policy.max_ndcg_drop
            ndcg = result.metrics["ndcg@10"]
            rules.append(
                Rule(
                    "ndcg@10 ≥ production − max_ndcg_drop",
                    result.dataset,
                    ndcg,
                    threshold,
                    ndcg >= threshold,
                )
            )
    return {
        "passed": all(r.passed for r in rules),
        "first_release": False,
        "rules": [_row(r) for r in rules],
    }


def _row(rule: Rule) -> dict[str, Any]:
    return {**asdict(rule), "margin": rule.margin}
