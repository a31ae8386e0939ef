"""Open-loop sweeps: each model's p99 against offered load, and the highest rate within the SLO.

One SLO for every model of a run: p99 within the scenario's ``slo_p99_ms`` (or ``--slo-ms``).
A target relative to each model's own unloaded latency would let the slowest loop pass (a
loop that sleeps 1 ms when idle gets a limit ten times everyone else's), so the answer would
not be comparable across models. A sweep walks a ladder of offered rates; where the ladder is
absolute (``rates``) every model walks the same one. A model's result is the highest rate
within the SLO, interpolated between the last point that met it and the first that missed
(linear in the rate, log-linear in the p99, as latency grows near saturation); a walk that
met the SLO everywhere is a floor, and one that stopped on an invalid point stops there.

A sweep whose models all stop at their first point says, per model, where and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.analysis import validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, spread_flags, valid_figures

DEFAULT_SLO_US = 10_000.0  # only for trials that record no SLO (the report says so)
OK_P99 = validity.ok_column("p99_us")


@dataclass
class SweepResult:
    """One open-loop sweep: the points per variant and the highest rate within the SLO."""

    series: str
    label: str
    group: str
    slo_us: float  # the one SLO of every model: its trials' (or the override)
    slo_source: str
    points: pd.DataFrame  # per (variant, case): rate, p99 and throughput spread
    within_slo: dict[str, list[float]]  # variant -> per-repetition rate within the SLO
    ceiling_not_found: dict[str, bool]  # variant -> every point met the SLO (rate is a floor)
    excluded: int  # trials whose p99 is not valid
    stopped: dict[str, str] = field(default_factory=dict)  # variant -> why its walk stopped

    def limit_us(self, variant: str) -> float:
        """The p99 every variant had to stay under: the run's one SLO."""
        return self.slo_us

    def describe_target(self) -> str:
        """The SLO in words."""
        return f"p99 ≤ {self.slo_us / 1000:g} ms ({self.slo_source})"


def sweep_slo(rows: pd.DataFrame, override_us: float | None = None) -> tuple[float, str]:
    """A sweep's absolute p99 SLO in µs and where it came from: the override, else its
    trials' ``slo_p99_ms`` (the median, should a sweep's cases ever disagree)."""
    if override_us is not None:
        return override_us, "given on the command line"
    values = pd.to_numeric(rows["slo_p99_ms"], errors="coerce").dropna() \
        if "slo_p99_ms" in rows else pd.Series([], dtype=float)
    values = values[values > 0]
    if values.empty:
        return DEFAULT_SLO_US, "no trial records an SLO: the report's default"
    return float(values.median()) * 1000.0, "the scenario's slo_p99_ms"


def sweep_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """The open-loop cases that form sweeps: outside C10K, a series of offered fractions of
    each model's maximum or of two or more rates."""
    opened = cases[(cases["mode"] == "open") & (cases["group"] != C10K_GROUP)]
    sized = opened.groupby("series")["case"].transform("nunique")
    fractional = opened["offered_fraction"].notna()
    return opened[fractional | (sized >= 2)]


def sweep_results(run: Run, slo_override_us: float | None = None) -> list[SweepResult]:
    """Every open-loop sweep in the run, judged against the run's one SLO."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame)
    results = []
    for series, group in sweep_cases(cases).groupby("series", sort=False):
        rows = frame[frame["case"].isin(group["case"])]
        slo_us, slo_source = sweep_slo(rows, slo_override_us)
        result = SweepResult(
            series=str(series), label=str(group["series_label"].iloc[0]),
            group=str(group["group"].iloc[0]), slo_us=slo_us, slo_source=slo_source,
            points=_sweep_points(rows), within_slo={}, ceiling_not_found={},
            excluded=int((~rows[OK_P99]).sum()))
        for variant, rows_v in rows.groupby("variant", sort=False):
            walks = [_rate_within(r, slo_us) for _, r in rows_v.groupby("repeat", dropna=False)]
            result.within_slo[str(variant)] = [rate for rate, _, _ in walks]
            result.ceiling_not_found[str(variant)] = all(top for _, top, _ in walks)
            result.stopped[str(variant)] = _first_reason(walks)
        results.append(result)
    return results


def _rate_within(rows: pd.DataFrame, limit_us: float) -> tuple[float, bool, str]:
    """Highest offered rate within ``limit_us``, interpolated past the last point that met it.

    Walks up from the lowest offered rate and stops at the first point whose p99 is not valid
    (failed, errors, saturated client: the walk ends at the last good point) or misses the
    limit (the rate where the p99 would cross it, log-linear between the two points). Returns
    (rate, every point passed, why it stopped).
    """
    best, best_p99 = 0.0, math.nan
    ordered = rows.sort_values(["rate", "offered_fraction"], na_position="last")
    for row in ordered.itertuples():
        where = _where(row)
        if row.rate != row.rate:
            return best, False, f"{where}: no offered rate recorded"
        if not getattr(row, OK_P99):
            first = str(row.exclusion_reason).split(validity.REASONS_JOIN)[0]
            why = first.partition(": ")[2] or first or "not valid"
            return best, False, f"{where}: p99 not valid ({why})"
        if row.p99_us > limit_us:
            crossing = interpolate(best, best_p99, float(row.rate), float(row.p99_us), limit_us)
            return crossing, False, (f"{where}: p99 {row.p99_us / 1000:.3g} ms over "
                                     f"{limit_us / 1000:.3g} ms")
        best, best_p99 = float(row.rate), float(row.p99_us)
    return best, True, "met the SLO at every offered rate"


def interpolate(rate_in: float, p99_in: float, rate_out: float, p99_out: float,
                limit_us: float) -> float:
    """Where p99 crosses ``limit_us`` between a point within it and the next one over it,
    log-linear in the p99; the point within when there is none (the first point missed)."""
    if not rate_in or not p99_in > 0 or not p99_out > p99_in:
        return rate_in
    share = (math.log(limit_us) - math.log(p99_in)) / (math.log(p99_out) - math.log(p99_in))
    return rate_in + max(0.0, min(1.0, share)) * (rate_out - rate_in)


def _where(row: object) -> str:
    fraction = getattr(row, "offered_fraction", math.nan)
    rate = getattr(row, "rate", math.nan)
    at = f"{rate:,.0f} req/s" if rate == rate else "an unknown rate"
    return f"at {fraction:.0%} ({at})" if fraction == fraction else f"at {at}"


def _first_reason(walks: list[tuple[float, bool, str]]) -> str:
    """Why the variant's walk stopped (the first repetition's reason that stopped)."""
    reasons = [why for _, top, why in walks if not top]
    return reasons[0] if reasons else walks[0][2] if walks else "no trial"


def _sweep_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, point): medians and spreads over valid figures, and counts."""
    keys = ["variant", "case"]
    counts = rows.groupby(keys, sort=False, dropna=False).agg(
        n_total=("trial_id", "size"),
        n_excluded=("excluded", "sum"),
        flags=("flags", spread_flags),
        rate=("rate", "median"),
        offered_fraction=("offered_fraction", "median"),
    )
    grouped = valid_figures(rows).groupby(keys, sort=False, dropna=False)
    figures = grouped.agg(
        p99_us_median=("p99_us", "median"), p99_us_min=("p99_us", "min"),
        p99_us_max=("p99_us", "max"),
        throughput_rps_median=("throughput_rps", "median"),
        throughput_rps_min=("throughput_rps", "min"),
        throughput_rps_max=("throughput_rps", "max"),
    )
    points = pd.concat([counts, figures], axis=1).reset_index()
    return points.sort_values(["variant", "rate"]).reset_index(drop=True)
