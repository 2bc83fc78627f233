"""The rule that picks a release's serving form, from numbers already measured (no model here).

- Speed: every form and the model itself encode the same batch in interleaved rounds (the order
  rotates each round), so a burst of load on a shared machine hits them all alike, timed by the
  process's CPU seconds (wall seconds on a GPU: the caller's choice). A form's
  speed-up is the median over rounds of (model's seconds ÷ form's seconds) in that round; its
  spread is the lowest and highest of those per-round ratios. A form counts as faster only when
  it was faster in every round (the whole spread above 1): a speed-up within the noise is none.
- Quality: per query, nDCG@10 of exact search with the form against the model on the same queries
  and corpus. A form is refused on a dataset when it is significantly worse there (one-sided
  Wilcoxon signed-rank test on the per-query differences, ``alpha``) or when its point loss in
  mean nDCG@10 (relative) is beyond the policy (``max_loss``). A bare threshold alone calls the
  noise of a 30-query collection a loss; the test alone would let a large loss through on a set
  too small to prove it.
- Choice: among the forms that passed and are faster, the fastest by median; where a more faithful
  form's speed cannot be told apart from it (its median within the fastest's spread), that one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

REFERENCE = "model"  # the model itself, as registered


@dataclass(frozen=True)
class Speed:
    """A form's speed-up over the model: the median and the range of the per-round ratios."""

    median: float
    low: float
    high: float

    @property
    def faster(self) -> bool:
        """Faster than the model beyond the noise: in every round."""
        return self.low > 1.0

    def ties(self, slower: Speed) -> bool:
        """Whether ``slower``'s speed-up lies within this one's spread: not told apart."""
        return slower.median >= self.low

    def row(self) -> dict[str, float]:
        return {
            "speedup": round(self.median, 3),
            "speedup_low": round(self.low, 3),
            "speedup_high": round(self.high, 3),
        }


def speedups(
    seconds: Mapping[str, Sequence[float]], reference: str = REFERENCE
) -> dict[str, Speed]:
    """Each form's ``Speed`` from the seconds each side took per round (same rounds, same batch)."""
    base = seconds[reference]
    out: dict[str, Speed] = {}
    for name, times in seconds.items():
        if name == reference:
            continue
        if len(times) != len(base) or not times:
            raise ValueError(f"{name}: {len(times)} rounds timed, the model {len(base)}")
        ratios = [b / t if t > 0 else math.inf for b, t in zip(base, times, strict=True)]
        out[name] = Speed(median(ratios), min(ratios), max(ratios))
    return out


@dataclass(frozen=True)
class Quality:
    """One dataset's paired comparison of a form with the model."""

    queries: int
    reference: float  # mean nDCG@10 of the model
    form: float  # mean nDCG@10 of the form
    p_value: float  # one-sided: the form is worse
    loss: float  # relative point loss, (reference - form) / reference

    def passed(self, max_loss: float, alpha: float) -> bool:
        return self.p_value >= alpha and self.loss <= max_loss

    def row(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "ndcg@10_model": round(self.reference, 5),
            "ndcg@10": round(self.form, 5),
            "loss": round(self.loss, 5),
            "p_worse": round(self.p_value, 4),
        }


def paired(reference: Sequence[float], form: Sequence[float]) -> Quality:
    """Per-query nDCG@10 of the model and of the form on the same queries, compared."""
    from scipy.stats import wilcoxon

    if len(reference) != len(form) or not reference:
        raise ValueError("a paired test needs the same, non-empty, queries on both sides")
    diffs = [r - f for r, f in zip(reference, form, strict=True)]
    if all(abs(d) < 1e-12 for d in diffs):
        p_value = 1.0  # the same ranking quality on every query: nothing to test
    else:
        # H1: the model scores higher than the form; queries that tie are dropped ("wilcox")
        p_value = float(wilcoxon(reference, form, alternative="greater").pvalue)
    ref_mean, form_mean = sum(reference) / len(reference), sum(form) / len(form)
    loss = (ref_mean - form_mean) / ref_mean if ref_mean > 0 else 0.0
    return Quality(len(reference), ref_mean, form_mean, p_value, loss)


def pick(
    speeds: dict[str, Speed],
    passed: dict[str, bool],
    fidelity: dict[str, float],
    *,
    torch_free: bool = False,
) -> str:
    """The form to serve (``REFERENCE``: the model itself). ``passed``: the quality rule's verdict
    per form; ``fidelity``: how close its vectors are to the model's (mean cosine; higher wins a
    tie in speed). With ``torch_free`` the model cannot serve, so a passing form need not be
    faster."""
    fit = [n for n, ok in passed.items() if ok and (torch_free or speeds[n].faster)]
    if not fit:
        return REFERENCE
    fastest = max(fit, key=lambda n: speeds[n].median)
    ties = [n for n in fit if speeds[fastest].ties(speeds[n])]
    return max(ties, key=lambda n: (fidelity.get(n, -1.0), speeds[n].median))
