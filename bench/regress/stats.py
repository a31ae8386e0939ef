"""Statistics of the head-versus-base regression check (no I/O; see bench/regress/check.py).

Every metric is turned into a *cost* (lower is better): the time per request (1 / throughput) or
the server CPU per request. For one model, with samples of the base (A) and the head (B):

- ``ratio``: median(head cost) / median(base cost); ``slowdown = ratio - 1`` (+0.25 means the head
  needs 25 % more time, or CPU, per request; for throughput that is head = base / 1.25).
- ``ci``: a percentile bootstrap confidence interval of that ratio (``scipy.stats.bootstrap``,
  resampling each side independently).
- ``p_value``: one-sided Mann-Whitney U (``scipy.stats.mannwhitneyu``): is the head's cost larger?
- ``noise``: the same-code noise, measured from the A/A structure of the run itself. Each side's
  samples are split at random into two halves many times; the log ratio of the two halves' medians
  is code-against-same-code. Its root mean square, over both sides and all splits, divided by
  sqrt(2) (two halves of n/2 are twice as noisy as the two sides of n each, in variance), estimates
  the standard deviation of the head/base log ratio when nothing changed.
- ``threshold``: max(the configured threshold, 3 x noise).
- ``flagged``: slowdown > threshold AND p < alpha. A confirmed regression needs a second,
  independent measurement of the same model that is flagged too (bench/regress/check.py reruns).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

DEFAULT_THRESHOLD = 0.15
DEFAULT_ALPHA = 0.01
NOISE_FACTOR = 3.0
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
NOISE_SPLITS = 200
MIN_SAMPLES = 3  # per side; below this nothing is said

ACCEPT_LINE = re.compile(r"^\s*perf-accept\s*:\s*(?P<names>.*?)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one model, head against base (costs: lower is better)."""

    metric: str
    n_base: int
    n_head: int
    base_median: float
    head_median: float
    ratio: float  # head cost / base cost
    ci_low: float
    ci_high: float
    p_value: float  # one-sided: head cost greater
    p_value_faster: float  # one-sided: head cost smaller
    noise: float  # same-code standard deviation of the log ratio, as a fraction
    threshold: float  # the threshold actually applied
    flagged: bool  # slower beyond threshold and significant
    faster: bool  # faster beyond threshold and significant

    @property
    def slowdown(self) -> float:
        return self.ratio - 1.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["slowdown"] = self.slowdown
        return data


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array) & (array > 0)]


def ratio_of_medians(head: Sequence[float], base: Sequence[float]) -> float:
    """median(head) / median(base)."""
    return float(np.median(head) / np.median(base))


def bootstrap_ratio_ci(head: Sequence[float], base: Sequence[float], *,
                       confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of median(head) / median(base), each side resampled alone."""

    def statistic(h: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        return np.median(h, axis=axis) / np.median(b, axis=axis)

    result = stats.bootstrap((np.asarray(head, float), np.asarray(base, float)), statistic,
                             vectorized=True, paired=False, confidence_level=confidence,
                             n_resamples=resamples, method="percentile",
                             random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def same_code_noise(base: Sequence[float], head: Sequence[float], *, splits: int = NOISE_SPLITS,
                    seed: int = 0) -> float:
    """Standard deviation of log(head/base median ratio) expected when the code is the same.

    Split-half estimate from the A/A structure (see the module docstring); 0.0 when a side has
    fewer than 4 samples on both sides (no halves of two).
    """
    rng = np.random.default_rng(seed)
    squares: list[float] = []
    for side in (np.log(np.asarray(base, float)), np.log(np.asarray(head, float))):
        half = len(side) // 2
        if half < 2:
            continue
        for _ in range(splits):
            order = rng.permutation(len(side))
            first, second = side[order[:half]], side[order[half:2 * half]]
            squares.append(float(np.median(first) - np.median(second)) ** 2)
    if not squares:
        return 0.0
    return math.sqrt(sum(squares) / len(squares)) / math.sqrt(2.0)


def effective_threshold(threshold: float, noise: float, factor: float = NOISE_FACTOR) -> float:
    """The configured threshold, widened to ``factor`` x the same-code noise when that is larger."""
    return max(threshold, math.expm1(factor * noise))


def compare_costs(metric: str, base: Sequence[float], head: Sequence[float], *,
                  threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                  seed: int = 0) -> MetricComparison | None:
    """Compare two samples of a cost (lower is better); None when a side has too few samples."""
    base_values, head_values = _clean(base), _clean(head)
    if len(base_values) < MIN_SAMPLES or len(head_values) < MIN_SAMPLES:
        return None
    ratio = ratio_of_medians(head_values, base_values)
    low, high = bootstrap_ratio_ci(head_values, base_values, seed=seed)
    p_slower = float(stats.mannwhitneyu(head_values, base_values, alternative="greater").pvalue)
    p_faster = float(stats.mannwhitneyu(head_values, base_values, alternative="less").pvalue)
    noise = same_code_noise(base_values, head_values, seed=seed)
    applied = effective_threshold(threshold, noise)
    return MetricComparison(
        metric=metric, n_base=len(base_values), n_head=len(head_values),
        base_median=float(np.median(base_values)), head_median=float(np.median(head_values)),
        ratio=ratio, ci_low=low, ci_high=high, p_value=p_slower, p_value_faster=p_faster,
        noise=noise, threshold=applied,
        flagged=ratio - 1.0 > applied and p_slower < alpha,
        faster=1.0 / ratio - 1.0 > applied and p_faster < alpha,
    )


def compare_throughput(base_rps: Sequence[float], head_rps: Sequence[float], *,
                       threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                       seed: int = 0) -> MetricComparison | None:
    """Throughput (higher is better) compared as time per request: 1 / throughput."""
    base_cost = [1.0 / value for value in base_rps if value and value > 0]
    head_cost = [1.0 / value for value in head_rps if value and value > 0]
    return compare_costs("time_per_request", base_cost, head_cost, threshold=threshold,
                         alpha=alpha, seed=seed)


def parse_accepted(messages: str) -> set[str]:
    """Model names accepted as intentionally slower by ``perf-accept:`` lines ("*" = all).

    ``perf-accept: epoll, threaded`` or ``perf-accept: epoll threaded``; case-insensitive key.
    """
    names: set[str] = set()
    for match in ACCEPT_LINE.finditer(messages):
        names.update(part for part in re.split(r"[,\s]+", match.group("names")) if part)
    return names


def is_accepted(model: str, accepted: set[str]) -> bool:
    """Whether ``model`` is covered by the accepted names."""
    return "*" in accepted or model in accepted
