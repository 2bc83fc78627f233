"""The serving-form rule on given numbers: a speed-up within the spread of the timing rounds is
none, a form significantly worse per query is refused even inside the point-loss policy, and noise
is not."""

from __future__ import annotations

import pytest

from embedlake.releases.form_rule import REFERENCE, paired, pick, speedups

MAX_LOSS, ALPHA = 0.02, 0.05


def test_a_speed_up_within_the_spread_is_ignored() -> None:
    # seconds per round on the same batch: the form is 10% faster on median, but slower in one
    # round (a burst of load): its spread reaches below 1, so it does not count as faster
    seconds = {
        REFERENCE: [1.00, 1.30, 0.95, 1.10, 1.00],
        "onnx-fp32": [0.90, 1.10, 1.05, 1.00, 0.91],
    }
    speed = speedups(seconds)["onnx-fp32"]
    assert speed.median == pytest.approx(1.10, abs=0.01)
    assert speed.low < 1.0 < speed.high and not speed.faster
    assert pick(speedups(seconds), {"onnx-fp32": True}, {"onnx-fp32": 1.0}) == REFERENCE


def test_a_form_faster_in_every_round_is_chosen_even_when_the_rounds_vary() -> None:
    seconds = {REFERENCE: [1.0, 3.0, 1.2, 0.9, 2.0], "onnx-int8": [0.4, 1.6, 0.5, 0.3, 0.9]}
    speed = speedups(seconds)["onnx-int8"]
    assert speed.faster and speed.low == pytest.approx(3.0 / 1.6)
    assert pick(speedups(seconds), {"onnx-int8": True}, {"onnx-int8": 0.99}) == "onnx-int8"
    # a faster form that failed the quality rule is never chosen
    assert pick(speedups(seconds), {"onnx-int8": False}, {"onnx-int8": 0.99}) == REFERENCE


def test_a_more_faithful_form_within_the_fastests_spread_wins() -> None:
    seconds = {
        REFERENCE: [2.0, 2.0, 2.0, 2.0],
        "onnx-int8": [0.80, 1.00, 0.85, 0.90],  # 2.0–2.5×
        "torch-bf16": [0.95, 0.90, 1.05, 1.00],  # median 2.05×: within int8's spread
        "onnx-fp32": [1.50, 1.60, 1.55, 1.50],  # 1.25–1.33×: clearly slower
    }
    speeds = speedups(seconds)
    passed = dict.fromkeys(speeds, True)
    fidelity = {"onnx-int8": 0.990, "torch-bf16": 0.99995, "onnx-fp32": 1.0}
    assert pick(speeds, passed, fidelity) == "torch-bf16"
    # apart, the fastest wins whatever its fidelity
    seconds["torch-bf16"] = [1.2, 1.2, 1.2, 1.2]
    assert pick(speedups(seconds), passed, fidelity) == "onnx-int8"


def test_torch_free_takes_a_passing_form_even_when_slower() -> None:
    seconds = {REFERENCE: [1.0, 1.0, 1.0], "onnx-fp32": [1.2, 1.1, 1.3]}
    assert pick(speedups(seconds), {"onnx-fp32": True}, {}, torch_free=True) == "onnx-fp32"
    assert pick(speedups(seconds), {"onnx-fp32": True}, {}) == REFERENCE


def test_rounds_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 rounds timed, the model 2"):
        speedups({REFERENCE: [1.0, 1.0], "x": [1.0, 1.0, 1.0]})


# per-query nDCG@10 of the model on 30 queries (a med-sized gate dataset)
MODEL = [0.35 + 0.02 * (i % 30) for i in range(30)]


def test_the_paired_test_refuses_a_form_significantly_worse_within_the_point_policy() -> None:
    # 1.5% worse on every query: inside a 2% policy, but no noise does that to 30 of 30 queries
    form = [v * 0.985 for v in MODEL]
    quality = paired(MODEL, form)
    assert quality.loss == pytest.approx(0.015)
    assert quality.p_value < 0.001
    assert not quality.passed(MAX_LOSS, ALPHA)


def test_noise_passes_and_a_big_loss_fails_on_policy() -> None:
    # a mean loss of 0.8%, up on some queries and down on others, as a noisy form moves rankings
    swings = [0.12, -0.10, 0.0, 0.08, -0.07, 0.0] * 5
    form = [v - s for v, s in zip(MODEL, swings, strict=True)]
    quality = paired(MODEL, form)
    assert 0 < quality.loss < MAX_LOSS
    assert quality.p_value > 0.1 and quality.passed(MAX_LOSS, ALPHA)
    # a loss beyond the policy fails even where too few queries make it significant
    few = paired([0.5, 0.6, 0.7], [0.5, 0.6, 0.55])
    assert few.p_value >= ALPHA and few.loss > MAX_LOSS and not few.passed(MAX_LOSS, ALPHA)


def test_identical_rankings_pass_with_p_one() -> None:
    quality = paired(MODEL, MODEL)
    assert (quality.p_value, quality.loss) == (1.0, 0.0) and quality.passed(0.0, ALPHA)
