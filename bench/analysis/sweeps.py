"""Open-loop sweeps: each model's p99 against offered load, and the highest rate within the SLO.

The SLO is read from its one place, each trial's ``slo_p99_ms`` (its case's, in ms), unless the
report is given one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.analysis.frames import C10K_GROUP, Run, case_table, spread_flags

DEFAULT_SLO_US = 10_000.0  # only for trials that record no SLO (the report says so)


@dataclass
class SweepResult:
    """One open-loop sweep: the points per variant and the highest rate within the SLO."""

    series: str
    label: str
    group: str
    slo_us: float
    slo_source: str
    points: pd.DataFrame  # per (variant, offered_fraction): rate, p99 and throughput spread
    within_slo: dict[str, list[float]]  # variant -> per-repetition highest rate within SLO
    ceiling_not_found: dict[str, bool]  # variant -> every point met the SLO (rate is a floor)
    excluded: int


def sweep_slo(rows: pd.DataFrame, override_us: float | None = None) -> tuple[float, str]:
    """A sweep's p99 SLO in µs and where it came from: the override, else its trials'
    ``slo_p99_ms`` (the median, should a sweep's cases ever disagree)."""
    if override_us is not None:
        return override_us, "given on the command line"
    values = pd.to_numeric(rows["slo_p99_ms"], errors="coerce").dropna() \
        if "slo_p99_ms" in rows else pd.Series([], dtype=float)
    values = values[values > 0]
    if values.empty:
        return DEFAULT_SLO_US, "no trial records an SLO: the report's default"
    return float(values.median()) * 1000.0, "the scenario's slo_p99_ms"


def sweep_results(run: Run, slo_override_us: float | None = None) -> list[SweepResult]:
    """Every open-loop sweep in the run, reduced against its SLO."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame)
    opened = cases[(cases["mode"] == "open") & (cases["group"] != C10K_GROUP)]
    results = []
    for series, group in opened.groupby("series", sort=False):
        rows = frame[frame["case"].isin(group["case"])]
        slo_us, slo_source = sweep_slo(rows, slo_override_us)
        within, open_top = {}, {}
        for variant, rows_v in rows.groupby("variant", sort=False):
            per_repeat = [_rate_within_slo(r, slo_us)
                          for _, r in rows_v.groupby("repeat", dropna=False)]
            within[variant] = [rate for rate, _ in per_repeat]
            open_top[variant] = all(top for _, top in per_repeat)
        results.append(
            SweepResult(
                series=str(series), label=str(group["series_label"].iloc[0]),
                group=str(group["group"].iloc[0]), slo_us=slo_us, slo_source=slo_source,
                points=_sweep_points(rows),
                within_slo=within, ceiling_not_found=open_top,
                excluded=int(rows["excluded"].sum()),
            )
        )
    return results


def _rate_within_slo(rows: pd.DataFrame, slo_us: float) -> tuple[float, bool]:
    """Highest offered rate up to which every point was valid with p99 <= SLO.

    Walks up from the lowest offered rate and stops at the first point that failed, had
    errors, had a saturated client, or missed the SLO. Returns (rate, all points passed).
    """
    best = 0.0
    ordered = rows.sort_values(["rate", "offered_fraction"], na_position="last")
    for row in ordered.itertuples():
        ok = not row.excluded and row.p99_us == row.p99_us and row.p99_us <= slo_us
        if not ok or row.rate != row.rate:
            return best, False
        best = float(row.rate)
    return best, True


def _sweep_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, offered fraction): medians and spreads over valid trials, and counts."""
    keys = ["variant", "offered_fraction"]
    counts = rows.groupby(keys, sort=False, dropna=False).agg(
        n_total=("trial_id", "size"),
        n_excluded=("excluded", "sum"),
        flags=("flags", spread_flags),
        rate_all=("rate", "median"),
    )
    valid = rows[~rows["excluded"]]
    parts = [counts]
    if not valid.empty:
        grouped = valid.groupby(keys, sort=False, dropna=False)
        parts.append(
            grouped.agg(
                rate=("rate", "median"),
                p99_us_median=("p99_us", "median"),
                p99_us_min=("p99_us", "min"),
                p99_us_max=("p99_us", "max"),
                throughput_rps_median=("throughput_rps", "median"),
                throughput_rps_min=("throughput_rps", "min"),
                throughput_rps_max=("throughput_rps", "max"),
            )
        )
    points = pd.concat(parts, axis=1).reset_index()
    for name in ("rate", "p99_us_median", "p99_us_min", "p99_us_max", "throughput_rps_median",
                 "throughput_rps_min", "throughput_rps_max"):
        if name not in points:
            points[name] = math.nan
    points["rate"] = points["rate"].fillna(points["rate_all"])
    return points.sort_values(["variant", "rate"]).reset_index(drop=True)
