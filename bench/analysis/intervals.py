"""Medians and ratios of medians: how the report states a gap between two models.

A ratio travels where a difference does not (a machine twice as slow halves both models), and
"the best is 1.15x the runner-up" reads directly. Whether such a gap is real is the paired
test's question (bench/analysis/verdicts.py, significance.py), not this module's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def median(values: Sequence[float]) -> float:
    """The median of some figures (NaN when there are none)."""
    return float(np.median(values)) if len(values) else float("nan")


def ratio_of_medians(a: Sequence[float], b: Sequence[float]) -> float:
    """median(a) / median(b), NaN when either is missing or b's is zero."""
    top, bottom = median(a), median(b)
    if top != top or bottom != bottom:
        return float("nan")
    if bottom == 0:
        return float("inf") if top > 0 else 1.0
    return top / bottom


def advantage(leader: Sequence[float], other: Sequence[float], better: str) -> float:
    """How many times better the leader is than ``other`` (>= 1 when it leads): the ratio of
    medians, oriented so that 'higher is better' and 'lower is better' read alike."""
    return ratio_of_medians(leader, other) if better == "higher" \
        else ratio_of_medians(other, leader)
