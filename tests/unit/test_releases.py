from __future__ import annotations

import pytest

from embedlake import Workspace
from embedlake.config import GateSettings
from embedlake.errors import Conflict, InputError
from embedlake.evaluate.bench import Result
from embedlake.releases.gate import CERTIFIED_GAIN, NO_REGRESSION, decide, describe
from embedlake.releases.publish import rollback


def _result(dataset: str, per_query: list[float] | None = None, recall: float = 0.99) -> Result:
    scores = {f"q{i}": v for i, v in enumerate(per_query or [0.5] * 30)}
    ndcg = sum(scores.values()) / len(scores)
    return Result(dataset, "x", {"ndcg@10": ndcg, "ann_recall@10": recall}, {"ndcg@10": scores})


BASE = [0.2 + 0.6 * ((i * 7) % 10) / 10 for i in range(40)]  # per-query nDCG@10 of production


def _moved(by: list[float]) -> list[float]:
    return [b + d for b, d in zip(BASE, by, strict=True)]


def test_the_first_release_passes_if_it_builds() -> None:
    decision = decide(GateSettings(), [_result("a", recall=0.5)], None)
    assert decision["passed"] and decision["first_release"]


def test_every_rule_is_reported_with_its_interval_and_margin() -> None:
    policy = GateSettings(max_ndcg_drop=0.02, min_ann_recall=0.95)
    same = [_result("a", BASE), _result("b", BASE)]
    ok = decide(policy, same, same)
    assert ok["passed"] and ok["policy"] == "no_regression"
    rows = {(r["dataset"], r["rule"]) for r in ok["rules"]}
    assert ("all datasets", NO_REGRESSION) in rows and ("a", NO_REGRESSION) in rows
    rule = next(r for r in ok["rules"] if r["dataset"] == "a" and r["rule"] == NO_REGRESSION)
    assert rule["threshold"] == pytest.approx(-0.02) and rule["margin"] == pytest.approx(0.02)
    assert rule["change"]["ties"] == 40 and rule["change"]["p_value"] == 1.0

    # one dataset loses 0.05 on every query, the other's index misses the recall floor
    bad = decide(policy, [_result("a", _moved([-0.05] * 40)), _result("b", BASE, recall=0.9)], same)
    assert not bad["passed"]
    failed = {(r["dataset"], r["rule"].split()[0]) for r in bad["rules"] if not r["passed"]}
    assert failed == {("a", "ndcg@10"), ("all datasets", "ndcg@10"), ("b", "ann_recall@10")}
    line = describe(next(r for r in bad["rules"] if r["dataset"] == "a" and not r["passed"]))
    assert line.startswith("FAIL") and "95% CI -0.0500 … -0.0500" in line and "p " in line


def test_a_noisy_small_loss_fails_only_where_its_interval_reaches_the_tolerance() -> None:
    noisy = [(-1) ** i * 0.3 - 0.01 for i in range(40)]  # mean −0.01, spread ±0.3
    decision = decide(
        GateSettings(max_ndcg_drop=0.02), [_result("a", _moved(noisy))], [_result("a", BASE)]
    )
    [rule] = [r for r in decision["rules"] if r["rule"] == NO_REGRESSION]
    assert rule["change"]["delta"] == pytest.approx(-0.01)
    assert rule["value"] < -0.02 and not decision["passed"]  # the point estimate alone passed
    wide = decide(
        GateSettings(max_ndcg_drop=0.5), [_result("a", _moved(noisy))], [_result("a", BASE)]
    )
    assert wide["passed"]


def test_certified_gain_needs_the_lower_bound_above_the_margin() -> None:
    certify = GateSettings(policy="certified_gain")
    production = [_result("a", BASE), _result("b", BASE)]
    flat = decide(certify, production, production)
    assert not flat["passed"]  # no regression, but no gain shown either
    [rule] = [r for r in flat["rules"] if r["rule"] == CERTIFIED_GAIN]
    assert rule["dataset"] == "all datasets" and rule["value"] == 0.0

    gain = [0.04 + (0.01 if i % 2 else -0.01) for i in range(40)]
    better = [_result("a", _moved(gain)), _result("b", BASE)]
    assert decide(certify, better, production)["passed"]  # the aggregate gains
    each = decide(GateSettings(policy="certified_gain", certify="each"), better, production)
    failed = [(r["dataset"], r["rule"]) for r in each["rules"] if not r["passed"]]
    assert failed == [("b", CERTIFIED_GAIN)]
    margin = decide(GateSettings(policy="certified_gain", min_gain=0.05), better, production)
    assert not margin["passed"]  # +0.02 in aggregate is below a 0.05 margin


def test_alias_moves_keep_history_and_roll_back_one_step_at_a_time(ws: Workspace) -> None:
    reg, rel = ws.catalog.registry, ws.catalog.releases
    model = reg.add_model(
        name="m", version="1", kind="lsa", dim=2, content_hash="h", prefix="p", manifest={}
    )
    for name in ("r1", "r2", "r3"):
        rel.create(name, model.id, "test")
    with pytest.raises(InputError, match="never been published"):
        rollback(ws)
    rel.move("production", "r1", kind="publish", actor="me", reason="first")
    with pytest.raises(InputError, match="no earlier release"):
        rollback(ws)
    rel.move("production", "r2", kind="publish", actor="me", reason="better")
    rel.move("production", "r3", kind="publish", actor="me", reason="best")
    assert rollback(ws).to_release == "r2"
    assert rollback(ws).to_release == "r1"
    assert rel.alias("production") == "r1"
    history = rel.history("production")
    assert [(m.from_release, m.to_release, m.kind) for m in history] == [
        (None, "r1", "publish"),
        ("r1", "r2", "publish"),
        ("r2", "r3", "publish"),
        ("r3", "r2", "rollback"),
        ("r2", "r1", "rollback"),
    ]
    assert all(m.actor for m in history)
    with pytest.raises(Conflict, match="moved"):
        rel.move("production", "r3", kind="publish", actor="me", reason="stale", expect="r2")
    assert rel.alias("production") == "r1"


def test_without_datasets_only_the_first_release_passes() -> None:
    assert decide(GateSettings(), [], None)["passed"]
    blind = decide(GateSettings(), [], [])
    assert not blind["passed"] and "no benchmark dataset" in blind["note"]
