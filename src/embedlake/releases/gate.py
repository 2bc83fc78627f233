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
from embedlake.evaluate import fusion
from embedlake.evaluate.bench import Result, bench_index
from embedlake.evaluate.paired import aggregate, changes
from embedlake.ingest.datasets import Dataset, load_registered
from embedlake.reduce.store import load_reducer
from embedlake.search.searcher import Searcher
from embedlake.workspace import Workspace


@dataclass(frozen=True)
class Judgement:
    """A candidate benchmarked against the release it would replace (None: the first release)."""

    against: ReleaseRecord | None
    candidate: list[Result]
    production: list[Result] | None
    decision: dict[str, Any]


# the rules on the change of nDCG@10 (their names start with the metric: tests and reports key on it)
NO_REGRESSION = "ndcg@10 change: lower bound ≥ −max_ndcg_drop"
CERTIFIED_GAIN = "ndcg@10 change: lower bound > min_gain"
ALL = "all datasets"  # the aggregate's row: each dataset counts once


@dataclass(frozen=True)
class Rule:
    rule: str
    dataset: str
    value: float
    threshold: float
    passed: bool
    change: dict[str, Any] | None = None  # the paired comparison the value comes from
    mode: str = "dense"  # the search mode it was measured in (dense, bm25, hybrid)

    @property
    def margin(self) -> float:
        return self.value - self.threshold


def held_out(ws: Workspace, *model_ids: int) -> dict[str, list[str]]:
    """dataset → query ids that one of these models was trained on or chose its epoch by
    (never used by the gate)."""
    out: dict[str, list[str]] = {}
    for model_id in model_ids:
        data = ws.catalog.registry.model_by_id(model_id).manifest.get("training_data", {})
        seen = data.get("train_queries", []) + data.get("dev_queries", [])
        if data.get("dataset") and seen:
            out.setdefault(data["dataset"], []).extend(seen)
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
            dataset = dataset.only(set(dataset.queries) - trained)
        out.append(dataset)
    return out


def benchmark(
    ws: Workspace, release: ReleaseRecord, datasets: list[Dataset], *, modes: bool = True
) -> list[Result]:
    """The release on each dataset: its dense index, then (``modes``) BM25 alone and hybrid
    search with the release's fusion, on the same queries."""
    registry = ws.catalog.registry
    model = registry.model_by_id(release.model_id)
    assert release.index_id is not None
    record = registry.index(release.index_id)
    reducer = load_reducer(ws, release)
    judged = [d for d in datasets if d.queries]
    out = [bench_index(ws, d, model, record, system=release.id, reducer=reducer) for d in judged]
    if modes and judged:
        searcher = Searcher(ws, release=release.id)
        for d in judged:
            out += fusion.results(fusion.sides(searcher, d), d, searcher.fusion, release.id)
    return out


def decide(
    policy: GateSettings, candidate: list[Result], production: list[Result] | None
) -> dict[str, Any]:
    """Every rule with its value, threshold, margin and verdict; passed if all pass.

    Against a live release the rules are on the paired per-query change of nDCG@10
    (``evaluate.paired``), in each search mode the results cover (dense, BM25, hybrid): each
    dataset's and the mode's aggregate lower confidence bound must stay above −``max_ndcg_drop``
    ("no regression"); the ``certified_gain`` policy also needs the dense mode's lower bound above
    ``min_gain``, in aggregate or (``certify = "each"``) on every dataset."""
    rules: list[Rule] = []
    for result in candidate:
        if "ann_recall@10" not in result.metrics:  # BM25 and hybrid have no index of their own
            continue
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
    theirs = {(r.dataset, r.mode): r for r in production}
    by_mode: dict[str, dict[str, Any]] = {}
    for r in candidate:
        if (r.dataset, r.mode) in theirs:
            base = theirs[r.dataset, r.mode].per_query["ndcg@10"]
            by_mode.setdefault(r.mode, {})[r.dataset] = changes(base, r.per_query["ndcg@10"])
    certify = policy.policy == "certified_gain"
    for mode, per_dataset in by_mode.items():
        stats = {
            name: aggregate([d], confidence=policy.confidence, resamples=policy.resamples)
            for name, d in per_dataset.items()
        }
        if len(per_dataset) > 1:
            stats[ALL] = aggregate(
                list(per_dataset.values()),
                confidence=policy.confidence,
                resamples=policy.resamples,
            )
        for name, change in stats.items():
            floor = -policy.max_ndcg_drop
            rules.append(
                Rule(
                    NO_REGRESSION, name, change.low, floor, change.low >= floor, change.row(), mode
                )
            )
            wanted = name == ALL or len(stats) == 1 or policy.certify == "each"
            if certify and mode == "dense" and wanted:
                rules.append(
                    Rule(
                        CERTIFIED_GAIN,
                        name,
                        change.low,
                        policy.min_gain,
                        change.low > policy.min_gain,
                        change.row(),
                        mode,
                    )
                )
    return {
        "passed": all(r.passed for r in rules),
        "first_release": False,
        "policy": policy.policy,
        "rules": [_row(r) for r in rules],
    }


def describe(rule: dict[str, Any]) -> str:
    """One rule as a line: its verdict, the change with its interval and p-value, the bound."""
    mark = "pass" if rule["passed"] else "FAIL"
    change = rule.get("change")
    where = rule["dataset"] + ("" if rule.get("mode", "dense") == "dense" else f" ({rule['mode']})")
    if change is None:
        return (
            f"{mark} {rule['rule']} on {rule['dataset']}: {rule['value']:.4f} vs "
            f"{rule['threshold']:.4f} ({rule['margin']:+.4f})"
        )
    level = round(100 * change["confidence"])
    return (
        f"{mark} {rule['rule']} on {where}: change {change['delta']:+.4f} "
        f"({level}% CI {change['low']:+.4f} … {change['high']:+.4f}, p {change['p_value']:.3g}, "
        f"{change['queries']} queries), lower bound {rule['value']:+.4f} vs "
        f"{rule['threshold']:+.4f}"
    )


def _row(rule: Rule) -> dict[str, Any]:
    return {**asdict(rule), "margin": rule.margin}
