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


def signed_rank_p(differences: Sequence[float]) -> float:
    """Two-sided exact Wilcoxon signed-rank p-value of paired differences (zeros dropped);
    1.0 with no non-zero difference. With n pairs the smallest possible p is 2 / 2**n: six
    rounds can reach 0.031, five no lower than 0.0625, which is why rankings need six."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return 1.0
    return float(stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided",
                                method="exact").pvalue)


def smallest_p(pairs: int) -> float:
    """The smallest two-sided p a signed-rank test over this many pairs can give."""
    return 2.0 / 2 ** pairs if pairs > 0 else 1.0
