"""The gate's statistics against cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from embedlake.errors import InputError
from embedlake.evaluate.paired import aggregate, changes, paired


def _runs(diffs: list[float]) -> tuple[dict[str, float], dict[str, float]]:
    base = {f"q{i}": 0.5 for i in range(len(diffs))}
    return base, {q: base[q] + d for q, d in zip(base, diffs, strict=True)}


def test_sign_flip_p_value_is_exact_for_few_queries() -> None:
    # 4 queries all better: of the 2^4 sign assignments only all-plus and all-minus reach a mean
    # change of 2.5 in size, so the two-sided p is 2/16
    result = paired(*_runs([1, 2, 3, 4]))
    assert result.delta == pytest.approx(2.5)
    assert result.p_value == pytest.approx(2 / 16)
    assert (result.wins, result.losses, result.ties) == (4, 0, 0)


def test_bootstrap_interval_of_two_queries() -> None:
    # resampling [0, 1] gives a mean of 0, 0.5 or 1 with chances 1/4, 1/2, 1/4: the 95%
    # percentile interval is [0, 1]
    result = paired(*_runs([0.0, 1.0]))
    assert (result.low, result.delta, result.high) == pytest.approx((0.0, 0.5, 1.0))


def test_identical_systems_have_an_exact_zero_change() -> None:
    result = paired(*_runs([0.0] * 20))
    assert (result.low, result.high, result.p_value, result.ties) == (0.0, 0.0, 1.0, 20)


def test_a_consistent_gain_is_certified_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    gain = paired(*_runs(list(0.05 + rng.normal(0, 0.05, 100))))
    assert gain.low > 0 and gain.p_value < 0.001
    noise = paired(*_runs(list(rng.normal(0, 0.2, 100))))
    assert noise.low < 0 < noise.high and noise.p_value > 0.05


def test_aggregate_counts_each_dataset_once() -> None:
    small, large = np.full(5, 0.1), np.full(50, -0.1)
    result = aggregate([small, large])
    assert result.delta == pytest.approx(0.0)  # pooled queries would say −0.082
    assert result.queries == 55


def test_aggregate_sign_flip_against_enumeration() -> None:
    # 2 datasets × 3 queries, all +1: only 2 of the 64 sign assignments are as extreme
    result = aggregate([np.ones(3), np.ones(3)], resamples=20_000)
    assert result.p_value == pytest.approx(2 / 64, abs=0.004)


def test_only_common_queries_are_paired_and_none_is_an_error() -> None:
    assert list(changes({"a": 0.1, "b": 0.2}, {"b": 0.5, "c": 1.0})) == pytest.approx([0.3])
    with pytest.raises(InputError, match="measured on"):
        changes({"a": 0.1}, {"b": 0.2})
