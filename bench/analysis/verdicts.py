"""Verdicts: the best model at each scenario point, and who it cannot be told apart from.

Closed-loop cases are judged by median throughput, open-loop sweeps by the highest offered
rate within the SLO; only valid trials count, and ``native`` (the ceiling) never competes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scistats

from bench.analysis.frames import Run, case_table, is_native
from bench.analysis.sweeps import SweepResult

DEFAULT_MARGIN = 0.05  # single repetition: a relative gap at most this large is a tie
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def compare(best: list[float], other: list[float], margin: float) -> tuple[bool, str]:
    """Whether ``other`` ties ``best`` (True) or ``best`` is clearly ahead, and on what basis.

    With two or more repetitions on both sides: the 95 % percentile-bootstrap interval of the
    difference of medians; a tie when it contains zero. Otherwise: a tie when the relative gap
    between the medians is within ``margin``.
    """
    a, b = np.asarray(best, float), np.asarray(other, float)
    if len(a) >= 2 and len(b) >= 2:
        low, high = _bootstrap_difference(a, b)
        basis = f"bootstrap {CONFIDENCE:.0%} CI of median difference (n={len(a)} vs {len(b)})"
        return bool(low <= 0.0 <= high), basis
    top, value = float(np.median(a)), float(np.median(b))
    gap = (top - value) / top if top > 0 else 0.0
    basis = f"single repetition: {margin:.0%} tie margin"
    return bool(gap <= margin), basis


def _bootstrap_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of median(a) - median(b), seeded."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: the interval is the point
        point = float(a[0] - b[0])
        return point, point
    result = scistats.bootstrap(
        (a, b),
        lambda x, y, axis: np.median(x, axis=axis) - np.median(y, axis=axis),
        vectorized=True,
        method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        rng=np.random.default_rng(0),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass
class CaseVerdict:
    """The best model at one scenario point, and who it cannot be told apart from."""

    case: str
    group: str
    metric: str  # "median throughput" or "highest rate within SLO"
    best: str | None
    best_value: float
    runner_up: str | None
    runner_up_value: float
    tied: list[str]  # other models inside the noise of the best
    basis: str
    native_value: float
    excluded: int  # trials of this case left out of the figures
    note: str = ""
    best_is_floor: bool = False  # sweep: the best met the SLO everywhere, its limit lies higher

    @property
    def outcome(self) -> str:
        """'clear', 'tie' or 'none' (no valid trial of a non-native model)."""
        if self.best is None:
            return "none"
        return "tie" if self.tied else "clear"


def decide(
    samples: dict[str, list[float]], margin: float
) -> tuple[str | None, str | None, list[str], str]:
    """Best variant by median, runner-up, the variants tied with the best, and the basis."""
    ranked = sorted(
        ((float(np.median(v)), k) for k, v in samples.items() if v and not is_native(k)),
        reverse=True,
    )
    if not ranked:
        return None, None, [], "no valid trial"
    best = ranked[0][1]
    if len(ranked) == 1:
        return best, None, [], "only one model with valid trials"
    tied, bases = [], []
    for _, other in ranked[1:]:
        is_tie, basis = compare(samples[best], samples[other], margin)
        bases.append(basis)
        if is_tie:
            tied.append(other)
    return best, ranked[1][1], tied, bases[0]


def closed_verdicts(run: Run, margin: float = DEFAULT_MARGIN) -> list[CaseVerdict]:
    """One verdict per closed-loop case: the best model by median throughput."""
    frame, verdicts = run.frame, []
    if frame.empty:
        return verdicts
    cases = case_table(frame)
    for case in cases[cases["mode"] != "open"].itertuples():
        rows = frame[frame["case"] == case.case]
        valid = rows[~rows["excluded"]]
        samples = {
            v: g["throughput_rps"].dropna().tolist() for v, g in valid.groupby("variant")
        }
        best, runner, tied, basis = decide(samples, margin)
        best_value, native = _median(samples.get(best)), _native_median(samples)
        verdicts.append(
            CaseVerdict(
                case=case.case, group=str(case.group), metric="median throughput (req/s)",
                best=best, best_value=best_value,
                runner_up=runner, runner_up_value=_median(samples.get(runner)),
                tied=tied, basis=basis, native_value=native,
                excluded=int(rows["excluded"].sum()), note=_ceiling_note(best_value, native),
            )
        )
    return verdicts


def sweep_verdicts(
    sweeps: list[SweepResult], margin: float = DEFAULT_MARGIN
) -> list[CaseVerdict]:
    """One verdict per sweep: the best model by highest offered rate within the SLO."""
    verdicts = []
    for sweep in sweeps:
        samples = {k: v for k, v in sweep.within_slo.items() if v}
        best, runner, tied, basis = decide(samples, margin)
        if best is not None and _median(samples[best]) <= 0:
            best, runner, tied = None, None, []
            basis = "no model met the SLO at its lowest offered rate with a valid measurement"
        floors = [v for v, top in sweep.ceiling_not_found.items() if top and not is_native(v)]
        note = (
            f"{', '.join(floors)} met the SLO at every offered rate: the figure is a floor"
            if floors else ""
        )
        verdicts.append(
            CaseVerdict(
                case=sweep.label, group=sweep.group, metric="highest rate within SLO (req/s)",
                best=best, best_value=_median(samples.get(best)),
                runner_up=runner, runner_up_value=_median(samples.get(runner)),
                tied=tied, basis=basis, native_value=_native_median(samples),
                excluded=sweep.excluded, note=note, best_is_floor=best in floors,
            )
        )
    return verdicts


def _ceiling_note(best_value: float, native: float) -> str:
    """A warning when a Python model outran the native ceiling (something else was the limit)."""
    if best_value == best_value and native == native and best_value > native * (1 + 0.05):
        return ("faster than the native ceiling: the load generator or a busy machine, not the "
                "servers, probably set these figures")
    return ""


def _median(values: list[float] | None) -> float:
    return float(np.median(values)) if values else math.nan


def _native_median(samples: dict[str, list[float]]) -> float:
    values = [x for k, v in samples.items() if is_native(k) for x in v]
    return _median(values)
