"""Open-loop sweeps: each model's p99 against offered load, and the highest rate within the SLO.

The SLO is relative by default: p99 within ``RELATIVE_FACTOR`` times the model's own
unloaded p50, or within ``TAIL_FACTOR`` times its own unloaded p99 where that is larger (both
at one connection in closed loop on the same requests, else at the sweep's lowest offered
rate). Load may add queueing of ten service times; a machine whose scheduler already gives an
idle server a long tail is not held to a target its own noise breaks. That holds on a machine
three times slower as well as on a fast one, where an absolute threshold in milliseconds
passes everyone one day and no one the next.
The absolute SLO each trial records (``slo_p99_ms``, its case's) is judged too and shown
beside it; it decides only when the report is given one (``--slo-ms``).

A sweep whose models all stop at their first point says, per model, where and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.analysis import validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, spread_flags, valid_figures

DEFAULT_SLO_US = 10_000.0  # only for trials that record no SLO (the report says so)
RELATIVE_FACTOR = 10.0  # p99 within this many times the model's own unloaded p50 ...
TAIL_FACTOR = 3.0  # ... or this many times its unloaded p99, whichever is larger
OK_P99 = validity.ok_column("p99_us")


@dataclass
class SweepResult:
    """One open-loop sweep: the points per variant and the highest rate within the SLO."""

    series: str
    label: str
    group: str
    slo_us: float  # the absolute SLO its trials record (or the override)
    slo_source: str
    points: pd.DataFrame  # per (variant, offered_fraction): rate, p99 and throughput spread
    within_slo: dict[str, list[float]]  # variant -> per-repetition rate within the deciding SLO
    ceiling_not_found: dict[str, bool]  # variant -> every point met the SLO (rate is a floor)
    excluded: int  # trials whose p99 is not valid
    target: str = "absolute"  # which SLO decided within_slo: "relative" or "absolute"
    # variant -> (unloaded p50, unloaded p99, where they were measured)
    reference_us: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    within_absolute: dict[str, list[float]] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)  # variant -> why its walk stopped
    factor: float = RELATIVE_FACTOR

    def limit_us(self, variant: str) -> float:
        """The p99 the variant had to stay under (NaN: no unloaded p50 to scale)."""
        if self.target == "absolute":
            return self.slo_us
        p50, p99, _ = self.reference_us.get(variant, (math.nan, math.nan, ""))
        return max(self.factor * p50, TAIL_FACTOR * p99) if p50 == p50 else math.nan

    def describe_target(self) -> str:
        """The deciding SLO in words."""
        if self.target == "absolute":
            return f"p99 ≤ {self.slo_us / 1000:g} ms ({self.slo_source})"
        return (f"p99 ≤ {self.factor:g}× the model's own unloaded p50, or {TAIL_FACTOR:g}× "
                "its unloaded p99 where larger")


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
    """Every open-loop sweep in the run, judged against its SLO (relative unless overridden)."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame)
    results = []
    for series, group in sweep_cases(cases).groupby("series", sort=False):
        rows = frame[frame["case"].isin(group["case"])]
        slo_us, slo_source = sweep_slo(rows, slo_override_us)
        target = "absolute" if slo_override_us is not None else "relative"
        result = SweepResult(
            series=str(series), label=str(group["series_label"].iloc[0]),
            group=str(group["group"].iloc[0]), slo_us=slo_us, slo_source=slo_source,
            points=_sweep_points(rows), within_slo={}, ceiling_not_found={},
            excluded=int((~rows[OK_P99]).sum()), target=target,
            reference_us=unloaded_p50(frame, cases, group, rows))
        for variant, rows_v in rows.groupby("variant", sort=False):
            walks = [_rate_within(r, result.limit_us(str(variant)))
                     for _, r in rows_v.groupby("repeat", dropna=False)]
            result.within_slo[str(variant)] = [rate for rate, _, _ in walks]
            result.ceiling_not_found[str(variant)] = all(top for _, top, _ in walks)
            result.stopped[str(variant)] = _first_reason(walks)
            result.within_absolute[str(variant)] = [
                _rate_within(r, slo_us)[0] for _, r in rows_v.groupby("repeat", dropna=False)]
        results.append(result)
    return results


def unloaded_p50(frame: pd.DataFrame, cases: pd.DataFrame, sweep: pd.DataFrame,
                 rows: pd.DataFrame) -> dict[str, tuple[float, float, str]]:
    """Per variant, its p50 and p99 without load and where they came from: the medians of the
    valid figures of the closed-loop case at one connection with the sweep's requests, else
    its figures at the sweep's lowest offered rate."""
    first = sweep.iloc[0]
    alone = cases[(cases["mode"] != "open") & (cases["connections"] == 1)
                  & (cases["mix"] == first["mix"]) & (cases["pipeline"] == first["pipeline"])]
    out: dict[str, tuple[float, float, str]] = {}
    if not alone.empty:
        case = str(alone["case"].iloc[0])
        masked = valid_figures(frame[frame["case"] == case])
        for variant, group in masked.groupby("variant", sort=False):
            p50, p99 = group["p50_us"].median(), group["p99_us"].median()
            if p50 == p50:
                out[str(variant)] = (float(p50), float(p99), f"at one connection ({case})")
    for variant, group in valid_figures(rows).groupby("variant", sort=False):
        if str(variant) in out:
            continue
        lowest = group.dropna(subset=["p50_us"]).sort_values("rate")
        if not lowest.empty:
            out[str(variant)] = (float(lowest["p50_us"].iloc[0]),
                                 float(lowest["p99_us"].iloc[0]),
                                 f"at its lowest offered rate ({lowest['case'].iloc[0]})")
    return out


def _rate_within(rows: pd.DataFrame, limit_us: float) -> tuple[float, bool, str]:
    """Highest offered rate up to which every point had a valid p99 within ``limit_us``.

    Walks up from the lowest offered rate and stops at the first point whose p99 is not valid
    (failed, errors, saturated client) or misses the limit. Returns (rate, every point passed,
    why it stopped).
    """
    best = 0.0
    ordered = rows.sort_values(["rate", "offered_fraction"], na_position="last")
    for row in ordered.itertuples():
        where = _where(row)
        if limit_us != limit_us:
            return best, False, "no unloaded p50 to scale the SLO by"
        if row.rate != row.rate:
            return best, False, f"{where}: no offered rate recorded"
        if not getattr(row, OK_P99):
            first = str(row.exclusion_reason).split(validity.REASONS_JOIN)[0]
            why = first.partition(": ")[2] or first or "not valid"
            return best, False, f"{where}: p99 not valid ({why})"
        if row.p99_us > limit_us:
            return best, False, (f"{where}: p99 {row.p99_us / 1000:.3g} ms over "
                                 f"{limit_us / 1000:.3g} ms")
        best = float(row.rate)
    return best, True, "met the SLO at every offered rate"


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
    """Per (variant, offered fraction): medians and spreads over valid figures, and counts."""
    keys = ["variant", "offered_fraction"]
    counts = rows.groupby(keys, sort=False, dropna=False).agg(
        n_total=("trial_id", "size"),
        n_excluded=("excluded", "sum"),
        flags=("flags", spread_flags),
        rate=("rate", "median"),
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
