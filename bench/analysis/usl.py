"""Gunther's Universal Scalability Law fitted per model over the connections axis.

X(N) = λN / (1 + σ(N−1) + κN(N−1)): λ the throughput of one connection, σ contention (the
serial share), κ coherency (the crosstalk that makes throughput fall past a peak). Fitted with
scipy's ``curve_fit`` (σ bounded to [0, 1], κ ≥ 0, λ > 0) on every valid trial's throughput of
a closed-loop family (same mix, payload, pipeline; connections varying), so repeats weigh in as
they were measured. Intervals come from the covariance (Student's t, n − 3 degrees of freedom)
and are clipped to the bounds. Peak concurrency N* = √((1−σ)/κ) and X(N*) exist only where
κ > 0. A fit stands only with at least ``MIN_LEVELS`` connection levels that have a valid
trial; R² is always stated (``valid`` says whether the fit may be reported).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from bench.analysis.frames import Run, case_table, valid_figures

MIN_LEVELS = 6
CONFIDENCE = 0.95
KAPPA_ZERO = 1e-12  # below this κ is zero: no retrograde region, no N*


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """The USL's throughput at concurrency ``n``."""
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """One family's fit for one model; intervals are (low, high) at ``CONFIDENCE``."""

    variant: str
    family: str
    levels: tuple[int, ...]  # connection levels with at least one valid trial
    points: int  # valid trials fitted
    lam: float = math.nan
    sigma: float = math.nan
    kappa: float = math.nan
    lam_ci: tuple[float, float] = (math.nan, math.nan)
    sigma_ci: tuple[float, float] = (math.nan, math.nan)
    kappa_ci: tuple[float, float] = (math.nan, math.nan)
    r2: float = math.nan
    reason: str = ""  # why the fit is not reported ('' when it is)
    data: tuple[tuple[int, float], ...] = field(default=(), repr=False)  # (N, X) fitted

    @property
    def valid(self) -> bool:
        return not self.reason

    @property
    def n_star(self) -> float:
        """Peak concurrency √((1−σ)/κ); inf where κ is zero (throughput never falls)."""
        if not self.valid:
            return math.nan
        return math.sqrt((1 - self.sigma) / self.kappa) if self.kappa > KAPPA_ZERO else math.inf

    @property
    def x_star(self) -> float:
        """The throughput at N* (the asymptote λ/σ where κ is zero)."""
        if not self.valid:
            return math.nan
        if math.isinf(self.n_star):
            return self.lam / self.sigma if self.sigma > 0 else math.inf
        return float(usl(np.array(self.n_star), self.lam, self.sigma, self.kappa))


def fit(n: np.ndarray | list[float], x: np.ndarray | list[float], *, variant: str = "",
        family: str = "", min_levels: int = MIN_LEVELS) -> UslFit:
    """Fit the USL to throughputs ``x`` measured at concurrencies ``n`` (repeats allowed)."""
    n_arr, x_arr = np.asarray(n, dtype=float), np.asarray(x, dtype=float)
    keep = np.isfinite(n_arr) & np.isfinite(x_arr) & (n_arr >= 1) & (x_arr > 0)
    n_arr, x_arr = n_arr[keep], x_arr[keep]
    levels = tuple(sorted({int(v) for v in n_arr}))
    base = UslFit(variant, family, levels, len(n_arr),
                  data=tuple((int(a), float(b)) for a, b in zip(n_arr, x_arr, strict=True)))
    if len(levels) < min_levels:
        return _with(base, reason=f"{len(levels)} valid connection levels (at least "
                                  f"{min_levels} needed)")
    params, cov = _curve_fit(n_arr, x_arr)
    if params is None:
        return _with(base, reason="the fit did not converge")
    lam, sigma, kappa = (float(p) for p in params)
    predicted = usl(n_arr, lam, sigma, kappa)
    total = float(((x_arr - x_arr.mean()) ** 2).sum())
    r2 = 1 - float(((x_arr - predicted) ** 2).sum()) / total if total > 0 else math.nan
    lo_hi = _intervals(params, cov, len(n_arr))
    return _with(base, lam=lam, sigma=sigma, kappa=kappa, r2=r2,
                 lam_ci=_clip(lo_hi[0], 0, math.inf), sigma_ci=_clip(lo_hi[1], 0, 1),
                 kappa_ci=_clip(lo_hi[2], 0, math.inf))


def _curve_fit(n: np.ndarray, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """λ, σ, κ and their covariance (None where scipy gives up)."""
    # start from λ = the best throughput per connection at the lowest level, little σ and κ
    low = n == n.min()
    start = [float((x[low] / n[low]).max()), 0.01, 1e-4]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # a singular covariance: inf CIs
            params, cov = curve_fit(usl, n, x, p0=start,
                                    bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, np.inf]),
                                    maxfev=20_000)
    except (RuntimeError, ValueError):
        return None, np.empty(0)
    return params, cov


def _intervals(params: np.ndarray, cov: np.ndarray, points: int) -> list[tuple[float, float]]:
    """(low, high) per parameter: estimate ± t × standard error (nan without a covariance)."""
    dof = points - len(params)
    t = float(stats.t.ppf((1 + CONFIDENCE) / 2, dof)) if dof > 0 else math.inf
    errors = np.sqrt(np.diag(cov)) if cov.size else np.full(len(params), np.nan)
    return [(float(p - t * e), float(p + t * e)) for p, e in zip(params, errors, strict=True)]


def _clip(interval: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    return (max(low, interval[0]), min(high, interval[1]))


def _with(fit_: UslFit, **changes: object) -> UslFit:
    return UslFit(**{**fit_.__dict__, **changes})  # type: ignore[arg-type]


# ---------------------------------------------------------------- a run's fits


def run_fits(run: Run) -> list[UslFit]:
    """Every closed-loop family with at least two connection levels, every variant in it."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame)
    closed = cases[cases["mode"] == "closed"]
    masked = valid_figures(frame)
    fits = []
    for _family, members in closed.groupby("family", sort=False):
        if members["connections"].nunique() < 2:
            continue
        rows = masked[masked["case"].isin(members["case"])]
        label = str(members["family_label"].iloc[0])
        for variant, group in rows.groupby("variant", sort=False):
            fits.append(fit(group["connections"], group["throughput_rps"],
                            variant=str(variant), family=label))
    return fits


def fits_table(fits: list[UslFit]) -> pd.DataFrame:
    """One row per fit: coefficients, intervals, N*, X(N*), R², and why it is not reported."""
    return pd.DataFrame([{
        "family": f.family, "variant": f.variant, "levels": len(f.levels), "points": f.points,
        "lambda": f.lam, "sigma": f.sigma, "sigma_low": f.sigma_ci[0],
        "sigma_high": f.sigma_ci[1], "kappa": f.kappa, "kappa_low": f.kappa_ci[0],
        "kappa_high": f.kappa_ci[1], "n_star": f.n_star, "x_star": f.x_star, "r2": f.r2,
        "reported": f.valid, "reason": f.reason} for f in fits])
