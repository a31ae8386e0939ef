"""Rank tests and their multiple-comparison correction: the statistics whose error rates we state.

A verdict "A beats B" is a test of the null "A and B are the same", and its false-"clear" rate is
what a reader needs to trust it. With a handful of repetitions on a noisy machine a bootstrap
interval cannot give its nominal 95 %, so a ranked comparison here is an exact rank test on
ratios paired within a round (each model against the same round's reference, so the machine's
common drift divides out), Holm-corrected over all the comparisons of a run, and required to
clear a minimum effect as well. Holm (1979) controls the family-wise error rate at alpha for any
dependence between the tests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from scipy import stats

ALPHA = 0.05


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (NaN stays NaN, counted out of m)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if p == p]
    m = len(indexed)
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_log_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """log(a_i / b_i) for the pairs where both are positive and finite (one round, one pair)."""
    return [math.log(x / y) for x, y in zip(a, b, strict=True)
            if x == x and y == y and x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]


def signed_rank_p(differences: Sequence[float], alternative: str = "two-sided") -> float:
    """Exact Wilcoxon signed-rank p-value of paired differences (zeros dropped; 1.0 with none
    left); ``alternative`` "greater": the differences tend to be positive. With n pairs the
    smallest two-sided p is 2 / 2**n: nine rounds can reach 0.0039, which is what a Holm
    family of eight verdicts at alpha 0.05 needs for its first step (0.05 / 8 = 0.00625)."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return 1.0
    ranks = stats.rankdata([abs(d) for d in nonzero])
    if len(set(ranks)) < len(ranks):  # tied magnitudes: scipy on the data itself
        return float(stats.wilcoxon(nonzero, zero_method="wilcox", alternative=alternative,
                                    method="exact").pvalue)
    positive = int(sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0))
    return _exact_p(len(nonzero), positive, alternative)


@functools.cache
def _exact_p(pairs: int, positive_rank_sum: int, alternative: str) -> float:
    """Without ties the exact p depends only on the pairs and the positive ranks' sum: scipy
    on the canonical differences with that sum (ranks 1..n, the largest made positive first),
    computed once per (n, W+)."""
    left, signs = positive_rank_sum, []
    for rank in range(pairs, 0, -1):
        take = rank <= left
        left -= rank if take else 0
        signs.append(rank if take else -rank)
    return float(stats.wilcoxon(signs, zero_method="wilcox", alternative=alternative,
                                method="exact").pvalue)


def smallest_p(pairs: int, alternative: str = "two-sided") -> float:
    """The smallest p a signed-rank test over this many pairs can give."""
    if pairs <= 0:
        return 1.0
    return (2.0 if alternative == "two-sided" else 1.0) / 2 ** pairs
