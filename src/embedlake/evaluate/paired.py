"""Paired comparison of two systems on the same queries: the mean per-query change of a metric, its
bootstrap confidence interval and a randomisation test's p-value (scipy.stats).

Per dataset, the queries are resampled with replacement (percentile bootstrap of the mean change)
and the p-value is that of a two-sided sign-flip test: under "no difference" each query's change is
as likely negative as positive (exact for up to 13 queries, Monte Carlo beyond). In aggregate, each
dataset counts once (the mean of the datasets' mean changes), resampled and sign-flipped within
each dataset, so that a large collection does not drown a small one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedlake.errors import InputError

TIE = 1e-9  # a per-query change smaller than this is a tie (scores are rounded floats)


@dataclass(frozen=True)
class Paired:
    """``new`` − ``base`` over the same queries."""

    queries: int
    delta: float  # mean change
    low: float  # confidence interval of the mean change
    high: float
    p_value: float  # two-sided: the chance of a change this large if the systems were equal
    wins: int
    losses: int
    ties: int
    confidence: float

    def row(self) -> dict[str, Any]:
        return asdict(self)


def changes(base: Mapping[str, float], new: Mapping[str, float]) -> NDArray[np.float64]:
    """Per-query ``new − base`` over the queries both were measured on (sorted by query id)."""
    common = sorted(base.keys() & new.keys())
    if not common:
        raise InputError("a paired comparison needs queries that both systems were measured on")
    return np.array([new[q] - base[q] for q in common], dtype=np.float64)


def paired(
    base: Mapping[str, float],
    new: Mapping[str, float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Paired:
    """One dataset: the change of ``new`` over ``base`` with its interval and p-value."""
    return aggregate([changes(base, new)], confidence=confidence, resamples=resamples, seed=seed)


def aggregate(
    per_dataset: Sequence[NDArray[np.float64]],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Paired:
    """Several datasets' per-query changes: the mean of their means, with a stratified interval
    and p-value. One dataset is the plain paired case."""
    samples = [np.asarray(d, dtype=np.float64) for d in per_dataset if len(d)]
    if not samples:
        raise InputError("a paired comparison needs at least one query")
    from scipy import stats

    def statistic(*s: NDArray[np.float64], axis: int = -1) -> Any:
        return np.mean([x.mean(axis=axis) for x in s], axis=0)

    every = np.concatenate(samples)
    delta = float(statistic(*samples))
    if all(np.ptp(s) == 0 for s in samples):  # nothing to resample: the change is exact
        low = high = delta
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's advice on small samples, not an error
            ci = stats.bootstrap(
                tuple(samples),
                statistic,
                n_resamples=resamples,
                confidence_level=confidence,
                method="percentile",
                vectorized=True,
                batch=1000,  # bounds memory: a batch of resamples × queries at a time
                rng=seed,
            ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    if len(samples) == 1:
        test = stats.permutation_test(
            (samples[0],),
            statistic,
            permutation_type="samples",  # one sample: a sign-flip test
            n_resamples=resamples,
            vectorized=True,
            batch=1000,
            rng=seed,
        )
        p_value = float(test.pvalue)
    else:
        p_value = _stratified_sign_flip(samples, delta, resamples, seed)
    return Paired(
        queries=len(every),
        delta=delta,
        low=min(low, delta),  # a percentile interval of a skewed few can miss its own mean
        high=max(high, delta),
        p_value=min(1.0, p_value),
        wins=int((every > TIE).sum()),
        losses=int((every < -TIE).sum()),
        ties=int((np.abs(every) <= TIE).sum()),
        confidence=confidence,
    )


def _stratified_sign_flip(
    samples: Sequence[NDArray[np.float64]], observed: float, resamples: int, seed: int
) -> float:
    """Two-sided Monte Carlo sign-flip test of the mean of means (scipy's permutation_test flips
    one sample only). The observed assignment counts as one resample, so p is never 0."""
    rng = np.random.default_rng(seed)
    extreme = 0
    done = 0
    while done < resamples:
        n = min(1000, resamples - done)
        means = np.zeros(n)
        for s in samples:
            signs = rng.choice(np.array([-1.0, 1.0]), size=(n, len(s)))
            means += (signs * s).mean(axis=1)
        means /= len(samples)
        extreme += int((np.abs(means) >= abs(observed) - 1e-12).sum())
        done += n
    return (extreme + 1) / (resamples + 1)
