"""Bootstrap intervals on ratios of medians: how sure a gap between two models is.

A ratio travels where a difference does not (a machine twice as slow halves both models), and
"the best is 1.08x to 1.21x the runner-up" reads directly. Percentile bootstrap of
median(a) / median(b), resampling each side's repetitions independently, seeded so a report
renders the same twice. With fewer than two repetitions on a side there is no interval, and
the callers say so rather than fall back on a fixed margin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 4000
SEED = 0
MIN_REPETITIONS = 2  # a side with fewer has no spread to resample


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


def has_interval(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether both sides have enough repetitions for an interval."""
    return len(a) >= MIN_REPETITIONS and len(b) >= MIN_REPETITIONS


def ratio_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
                   ) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of median(a) / median(b); None with fewer than two
    repetitions on a side. A resample whose b median is zero gives an infinite ratio (or 1
    when a's is zero too), so the interval may reach infinity: a sweep repetition that missed
    its SLO at once (rate 0) still counts."""
    if not has_interval(a, b):
        return None
    x, y = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(SEED)
    top = np.median(x[rng.integers(0, len(x), (RESAMPLES, len(x)))], axis=1)
    bottom = np.median(y[rng.integers(0, len(y), (RESAMPLES, len(y)))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0),
                          np.where(top > 0, np.inf, 1.0))
    tail = (1.0 - confidence) / 2.0
    # quantiles of the resamples themselves (no interpolation: an infinite one stays whole)
    low, high = np.quantile(ratios, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def advantage(leader: Sequence[float], other: Sequence[float], better: str) -> float:
    """How many times better the leader is than ``other`` (>= 1 when it leads): the ratio of
    medians, oriented so that 'higher is better' and 'lower is better' read alike."""
    return ratio_of_medians(leader, other) if better == "higher" \
        else ratio_of_medians(other, leader)


def advantage_interval(leader: Sequence[float], other: Sequence[float], better: str
                       ) -> tuple[float, float] | None:
    """The bootstrap interval of ``advantage``; it holds 1 when the two cannot be told apart.
    The leader's figures are the denominator either way (they are the ones known to be
    positive); 'higher is better' inverts the interval."""
    span = ratio_interval(other, leader)
    if span is None or better != "higher":
        return span
    low, high = span
    return (1.0 / high if high > 0 else np.inf), (1.0 / low if low > 0 else np.inf)
