from __future__ import annotations

import pytest

from embedlake import Workspace
from embedlake.config import GateSettings
from embedlake.errors import Conflict, InputError
from embedlake.evaluate.bench import Result
from embedlake.releases.gate import decide
from embedlake.releases.publish import rollback


def _result(dataset: str, ndcg: float, recall: float = 0.99) -> Result:
    return Result(dataset, "x", {"ndcg@10": ndcg, "ann_recall@10": recall})


def test_the_first_release_passes_if_it_builds() -> None:
    decision = decide(GateSettings(), [_result("a", 0.1, recall=0.5)], None)
    assert decision["passed"] and decision["first_release"]


def test_every_rule_is_reported_with_its_margin() -> None:
    policy = GateSettings(max_ndcg_drop=0.005, min_ann_recall=0.95)
    ok = decide(
        policy, [_result("a", 0.396), _result("b", 0.5)], [_result("a", 0.400), _result("b", 0.45)]
    )
    assert ok["passed"]
    rule = next(r for r in ok["rules"] if r["dataset"] == "a" and r["rule"].startswith("ndcg"))
    assert rule["threshold"] == pytest.approx(0.395)
    assert rule["margin"] == pytest.approx(0.001)
    bad = decide(
        policy,
        [_result("a", 0.39), _result("b", 0.5, recall=0.9)],
        [_result("a", 0.400), _result("b", 0.45)],
    )
    assert not bad["passed"]
    failed = {(r["dataset"], r["rule"].split()[0]) for r in bad["rules"] if not r["passed"]}
    assert failed == {("a", "ndcg@10"), ("b", "ann_recall@10")}


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
