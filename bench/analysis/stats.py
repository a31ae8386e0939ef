"""Reduce a run folder's trial records: summary table, flags, aggregates, SLO rates, verdicts.

The run folder layout and the trial record are the runner's contract (see bench/run/runner.py):
``run.json`` plus ``trials/<trial_id>.json``. Nothing here measures anything; it only reads
records, so every figure in a report can be traced back to one trial file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram
from scipy import stats as scistats

NATIVE = "native"  # the reference ceiling: shown everywhere, never in a verdict
MARK_SATURATED = "†"
MARK_ERRORS = "‡"
MARK_FAILED = "✗"
MARK_NOTES = {
    MARK_SATURATED: "client saturated: the figures describe the load generator, not the server",
    MARK_ERRORS: "the trial had request errors",
    MARK_FAILED: "the trial failed (no figures)",
}
DEFAULT_MARGIN = 0.05  # single repetition: a relative gap at most this large is a tie
DEFAULT_SLO_US = 10_000.0  # used only when the scenario names no SLO (the report says so)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000

ID_FIELDS = [
    "trial_id", "case", "group", "model", "server_model", "model_args", "interpreter",
    "interpreter_tag", "interpreter_version", "gil_enabled", "repeat", "connections",
    "idle_connections", "mix", "payload_bytes", "mode", "pipeline", "rate", "offered_fraction",
    "base_case", "slo_p99_ms", "duration_s", "warmup_s", "placement", "status", "failure",
]
DERIVED_FIELDS = [
    "throughput_rps", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us",
    "cpu_us_per_request", "rss_per_connection_bytes", "ctx_switches_per_request",
    "error_rate", "errors", "client_saturated", "server_cpu_percent", "requests",
]
METRICS = [
    "throughput_rps", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us",
    "cpu_us_per_request", "rss_per_connection_bytes", "ctx_switches_per_request",
    "server_cpu_percent", "error_rate",
]
CASE_FIELDS = ["group", "mode", "connections", "mix", "payload_bytes", "pipeline"]
FAMILY_FIELDS = ["mode", "mix", "payload_bytes", "pipeline"]  # a case minus connections
SERIES_FIELDS = ["group", "connections", "mix", "payload_bytes", "pipeline"]  # a sweep minus rate
C10K_GROUP = "c10k"  # its cases get the report's C10K section, not the sweep tables
_CONN_PART = re.compile(r"-c\d+(?=-|$)")
_RATE_PART = re.compile(r"-r\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:pct)?$")


CONNECTION_FIGURES = ["connections_established", "idle_established", "idle_alive",
                      "over_capacity", "connect_p99_us", "connect_max_us", "rss_max",
                      "threads_max", "fds_max", "idle_connections", "held_max",
                      "rss_per_held_connection_bytes"]


class ReportError(Exception):
    """A run folder that cannot be reported on, with a message for the user."""


@dataclass
class Run:
    """A run folder's metadata, its trial records and the one-row-per-trial summary frame."""

    run_dir: Path
    meta: dict[str, Any]
    trials: dict[str, dict[str, Any]]
    frame: pd.DataFrame
    unreadable: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- loading and the summary


def load_run(run_dir: Path) -> Run:
    """Read run.json and every trials/*.json of ``run_dir`` (unreadable files are listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run folder")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ReportError(f"{run_dir}: not a run folder (run.json is missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise ReportError(f"{meta_path}: unreadable ({error})") from None
    trials: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    for path in sorted((run_dir / "trials").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            unreadable.append(f"{path.name}: {error}")
            continue
        if not isinstance(record, dict) or "trial_id" not in record:
            unreadable.append(f"{path.name}: not a trial record")
            continue
        trials[record["trial_id"]] = record
    ordered = _plan_order(meta, trials)
    frame = summary_frame([trials[tid] for tid in ordered])
    return Run(run_dir, meta, {tid: trials[tid] for tid in ordered}, frame, unreadable)


def _plan_order(meta: dict[str, Any], trials: dict[str, dict[str, Any]]) -> list[str]:
    """Trial ids in the run's plan order, then any unplanned ones by name."""
    plan = [tid for tid in meta.get("plan") or [] if tid in trials]
    seen = set(plan)
    return plan + sorted(tid for tid in trials if tid not in seen)


def _error_count(value: Any) -> float:
    """Errors as a number, whether recorded as a count or as a kind -> count mapping."""
    if isinstance(value, dict):
        return float(sum(v for v in value.values() if isinstance(v, int | float)))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _error_kinds(record: dict[str, Any]) -> str:
    """The swarm's errors by kind, as 'kind=n; ...' (empty when none)."""
    errors = (record.get("swarm") or {}).get("errors")
    if not isinstance(errors, dict):
        return ""
    return "; ".join(f"{kind}={count}" for kind, count in errors.items() if count)


def _client_cpu_max(record: dict[str, Any]) -> float:
    """The busiest swarm worker's CPU percent, when the swarm reported it."""
    cpu = ((record.get("swarm") or {}).get("client") or {}).get("cpu_percent")
    if isinstance(cpu, list | tuple):
        numbers = [c for c in cpu if isinstance(c, int | float)]
        return float(max(numbers)) if numbers else math.nan
    return float(cpu) if isinstance(cpu, int | float) else math.nan


def _trial_row(record: dict[str, Any]) -> dict[str, Any]:
    """One summary row: identity fields, every derived figure, flags."""
    row: dict[str, Any] = {}
    for name in ID_FIELDS:
        value = record.get(name)
        if name == "model_args":
            value = " ".join(str(a) for a in value or [])
        row[name] = value
    derived = record.get("derived") or {}
    for name in DERIVED_FIELDS + sorted(set(derived) - set(DERIVED_FIELDS)):
        key = name if name not in row else f"derived_{name}"
        row[key] = derived.get(name)
    swarm = record.get("swarm") or {}
    errors = _error_count(derived.get("errors"))
    if math.isnan(errors):
        errors = _error_count(swarm.get("errors"))
    row["errors"] = errors
    saturated = derived.get("client_saturated")
    if saturated is None:
        saturated = (swarm.get("client") or {}).get("saturated")
    row["client_saturated"] = bool(saturated)
    row["error_kinds"] = _error_kinds(record)
    row["client_cpu_percent_max"] = _client_cpu_max(record)
    reasons = (swarm.get("client") or {}).get("reasons")
    row["saturation_reasons"] = "; ".join(map(str, reasons)) if isinstance(reasons, list) else ""
    row.update(_connection_figures(record))
    return row


def _connection_figures(record: dict[str, Any]) -> dict[str, Any]:
    """What a many-connection trial needs besides the derived figures: connections the swarm
    established (busy, idle, idle still open at the end), ERROR 4 turn-aways, the slowest
    connects, the server's peak RSS, threads and descriptors, the most connections it held
    (descriptors over those it had before the load) and its RSS growth per held one."""
    swarm = record.get("swarm") or {}
    server = record.get("server") or {}
    samples = server.get("samples") or []
    held = rss_held = None
    if samples and isinstance(server.get("fds_max"), int):
        held = max(0, server["fds_max"] - samples[0]["fds"])
        if held and isinstance(server.get("rss_max"), int) and server.get("rss_idle"):
            rss_held = max(0, server["rss_max"] - server["rss_idle"]) / held
    idle = swarm.get("idle") or {}
    errors = swarm.get("errors") if isinstance(swarm.get("errors"), dict) else {}
    connect = swarm.get("connect_us") or {}
    return {
        "connections_established": swarm.get("connections_established"),
        "idle_established": idle.get("established"),
        "idle_alive": idle.get("alive_at_end"),
        "over_capacity": errors.get("over_capacity", 0) if swarm else None,
        "connect_p99_us": connect.get("p99"), "connect_max_us": connect.get("max"),
        "rss_max": server.get("rss_max"), "threads_max": server.get("threads_max"),
        "fds_max": server.get("fds_max"), "held_max": held,
        "rss_per_held_connection_bytes": rss_held,
    }


def summary_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial, with ``variant`` (the series label) and the exclusion flags."""
    frame = pd.DataFrame([_trial_row(r) for r in records])
    if frame.empty:
        frame = pd.DataFrame(columns=ID_FIELDS + DERIVED_FIELDS)
    for name in METRICS + ["errors", "requests", "rate", "offered_fraction", "connections",
                           *CONNECTION_FIGURES]:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    frame["variant"] = _variants(frame)
    frame["failed"] = frame["status"].fillna("failed") != "ok"
    error_rate = frame["error_rate"].fillna(0) if "error_rate" in frame else 0
    frame["has_errors"] = ~frame["failed"] & ((frame["errors"].fillna(0) > 0) | (error_rate > 0))
    frame["client_saturated"] = ~frame["failed"] & frame["client_saturated"].astype(bool)
    frame["excluded"] = frame["failed"] | frame["has_errors"] | frame["client_saturated"]
    frame["flags"] = [_marks(r) for r in frame.itertuples()]
    frame["exclusion_reason"] = [_reason(r) for r in frame.itertuples()]
    return frame


def _variants(frame: pd.DataFrame) -> list[str]:
    """Series labels: the runner's model label (already unique per variant and interpreter);
    arguments or interpreter are appended only where one label ran in several ways."""
    if frame.empty:
        return []
    ways = frame.groupby("model")[["model_args", "interpreter"]].nunique(dropna=False)
    labels = []
    for row in frame.itertuples():
        label = str(row.model)
        if row.model in ways.index and ways.loc[row.model, "model_args"] > 1 and row.model_args:
            label += f" {row.model_args}"
        if row.model in ways.index and ways.loc[row.model, "interpreter"] > 1 and row.interpreter:
            label += f" ({Path(str(row.interpreter)).name})"
        labels.append(label)
    return labels


def _marks(row: Any) -> str:
    """The markers of one summary row."""
    if row.failed:
        return MARK_FAILED
    return (MARK_SATURATED if row.client_saturated else "") + (
        MARK_ERRORS if row.has_errors else ""
    )


def _reason(row: Any) -> str:
    """Why a trial is excluded from medians and verdicts ('' when it is not)."""
    reasons = []
    if row.failed:
        reasons.append(f"failed: {row.failure or 'no reason recorded'}")
    if row.client_saturated:
        why = f" ({row.saturation_reasons})" if row.saturation_reasons else ""
        reasons.append(f"client saturated{why}")
    if row.has_errors:
        kinds = f" ({row.error_kinds})" if row.error_kinds else ""
        reasons.append(f"{int(row.errors) if row.errors == row.errors else 'some'} errors{kinds}")
    return "; ".join(reasons)


def is_native(variant: str) -> bool:
    """Whether a series label is the native reference model ('native', 'native@tag')."""
    return re.split(r"[ @(]", variant, maxsplit=1)[0] == NATIVE


# ---------------------------------------------------------------- cases and aggregates


def case_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case (in run order) with its scenario fields, family and labels."""
    if frame.empty:
        return pd.DataFrame(columns=["case", *CASE_FIELDS, "family", "family_label", "order"])
    first = frame.drop_duplicates("case").reset_index(drop=True)
    cases = first[["case", *CASE_FIELDS]].copy()
    cases["order"] = range(len(cases))
    cases["family"] = [_key(r, FAMILY_FIELDS) for r in cases.itertuples()]
    cases["family_label"] = [_CONN_PART.sub("", str(c)) for c in cases["case"]]
    cases["series"] = [_key(r, SERIES_FIELDS) for r in cases.itertuples()]
    cases["series_label"] = [_RATE_PART.sub("", str(c)) for c in cases["case"]]
    return cases


def _key(row: Any, names: list[str]) -> str:
    """A hashable, printable key from some fields of a row."""
    return "|".join(str(getattr(row, n)) for n in names)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (case, variant): counts, markers, and median/min/max/quartiles of valid trials."""
    columns = ["case", "variant", "n_total", "n_valid", "n_excluded", "n_failed", "flags"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    counts = frame.groupby(["case", "variant"], sort=False).agg(
        n_total=("trial_id", "size"),
        n_excluded=("excluded", "sum"),
        n_failed=("failed", "sum"),
        flags=("flags", lambda s: "".join(sorted(set("".join(s))))),
    )
    valid = frame[~frame["excluded"]]
    present = [m for m in METRICS if m in frame]
    parts = [counts]
    if not valid.empty:
        grouped = valid.groupby(["case", "variant"], sort=False)[present]
        parts += [
            grouped.median().add_suffix("_median"),
            grouped.min().add_suffix("_min"),
            grouped.max().add_suffix("_max"),
            grouped.quantile(0.25).add_suffix("_q1"),
            grouped.quantile(0.75).add_suffix("_q3"),
        ]
    table = pd.concat(parts, axis=1).reset_index()
    table["n_valid"] = table["n_total"] - table["n_excluded"]
    for metric in present:
        for suffix in ("_median", "_min", "_max", "_q1", "_q3"):
            if metric + suffix not in table:
                table[metric + suffix] = math.nan
    return table


# ---------------------------------------------------------------- ties and verdicts


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
class Verdict:
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


def closed_verdicts(run: Run, margin: float = DEFAULT_MARGIN) -> list[Verdict]:
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
            Verdict(
                case=case.case, group=str(case.group), metric="median throughput (req/s)",
                best=best, best_value=best_value,
                runner_up=runner, runner_up_value=_median(samples.get(runner)),
                tied=tied, basis=basis, native_value=native,
                excluded=int(rows["excluded"].sum()), note=_ceiling_note(best_value, native),
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


# ---------------------------------------------------------------- open-loop sweeps and SLO


def find_slo_us(spec: Any) -> tuple[float, str] | None:
    """The p99 SLO in µs from a scenario spec, and where it was found (None if absent).

    Looks for a key containing 'slo' (e.g. ``sweep.slo_p99_ms``), preferring one under a
    'sweep' section; the unit comes from the suffix (_ms, _us, _s) or a string like '10ms'.
    """
    found = sorted(_slo_candidates(spec, ""), key=lambda c: ("sweep" not in c[1], c[1]))
    return found[0] if found else None


def _slo_candidates(node: Any, path: str) -> list[tuple[float, str]]:
    found: list[tuple[float, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if "slo" in str(key).lower() and not isinstance(value, dict | list):
                micros = _to_us(str(key).lower(), value)
                if micros is not None:
                    found.append((micros, where))
            else:
                found += _slo_candidates(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _slo_candidates(item, f"{path}[{index}]")
    return found


_UNITS_US = {"us": 1.0, "µs": 1.0, "ms": 1_000.0, "s": 1_000_000.0}


def _to_us(key: str, value: Any) -> float | None:
    """A duration in µs from a key's unit suffix or a string's unit ('10ms')."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([\d.]+)\s*(us|µs|ms|s)\s*", value)
        return float(match[1]) * _UNITS_US[match[2]] if match else None
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    for suffix in ("_us", "_ms", "_s"):
        if key.endswith(suffix):
            return float(value) * _UNITS_US[suffix[1:]]
    return float(value) * 1_000.0  # a bare number: milliseconds, as SLOs are usually written


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


def sweep_slo(
    rows: pd.DataFrame, spec: dict[str, Any], override_us: float | None = None
) -> tuple[float, str]:
    """A sweep's p99 SLO in µs and where it came from: the override, the trials' own
    ``slo_p99_ms``, a setting found in the scenario spec, else the report's default."""
    if override_us is not None:
        return override_us, "given on the command line"
    if "slo_p99_ms" in rows:
        values = pd.to_numeric(rows["slo_p99_ms"], errors="coerce").dropna()
        if not values.empty:
            return float(values.median()) * 1000.0, "the scenario's slo_p99_ms"
    found = find_slo_us(spec)
    if found:
        return found[0], f"scenario setting {found[1]}"
    return DEFAULT_SLO_US, "the scenario names no SLO: the report's default"


def sweep_results(run: Run, slo_override_us: float | None = None) -> list[SweepResult]:
    """Every open-loop sweep in the run, reduced against its SLO."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame)
    opened = cases[(cases["mode"] == "open") & (cases["group"] != C10K_GROUP)]
    spec = run.meta.get("scenario_spec") or {}
    results = []
    for series, group in opened.groupby("series", sort=False):
        rows = frame[frame["case"].isin(group["case"])]
        slo_us, slo_source = sweep_slo(rows, spec, slo_override_us)
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
        flags=("flags", lambda s: "".join(sorted(set("".join(s))))),
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


def sweep_verdicts(
    sweeps: list[SweepResult], margin: float = DEFAULT_MARGIN
) -> list[Verdict]:
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
            Verdict(
                case=sweep.label, group=sweep.group, metric="highest rate within SLO (req/s)",
                best=best, best_value=_median(samples.get(best)),
                runner_up=runner, runner_up_value=_median(samples.get(runner)),
                tied=tied, basis=basis, native_value=_native_median(samples),
                excluded=sweep.excluded, note=note, best_is_floor=best in floors,
            )
        )
    return verdicts


# ---------------------------------------------------------------- latency histograms


def decode_histogram(swarm: dict[str, Any] | None) -> tuple[HdrHistogram, float] | None:
    """The swarm's encoded HdrHistogram and the factor that turns its values into µs."""
    encoded = (swarm or {}).get("histogram")
    if not encoded:
        return None
    try:
        histogram = HdrHistogram.decode(encoded)
    except Exception:  # a corrupt or foreign encoding: no spectrum for this trial
        return None
    if histogram.get_total_count() == 0:
        return None
    return histogram, _histogram_scale(histogram, swarm or {})


def _histogram_scale(histogram: HdrHistogram, swarm: dict[str, Any]) -> float:
    """µs per histogram unit: declared by the swarm, else matched against its own p50."""
    unit = swarm.get("histogram_unit") or swarm.get("histogram_units")
    if isinstance(unit, str) and unit.lower() in ("ns", "us", "µs", "ms"):
        return {"ns": 1e-3, "us": 1.0, "µs": 1.0, "ms": 1e3}[unit.lower()]
    p50 = (swarm.get("latency_us") or {}).get("p50")
    raw = histogram.get_value_at_percentile(50.0)
    if isinstance(p50, int | float) and p50 > 0 and raw > 0:
        candidates = (1e-3, 1.0, 1e3)
        return min(candidates, key=lambda s: abs(math.log(raw * s / p50)))
    return 1.0


def merged_histogram(records: list[dict[str, Any]]) -> tuple[HdrHistogram, float] | None:
    """The repetitions' histograms added together (same unit assumed as the first)."""
    merged = None
    for record in records:
        decoded = decode_histogram(record.get("swarm"))
        if decoded is None:
            continue
        if merged is None:
            merged = decoded
        else:
            merged[0].add(decoded[0])
    return merged


def percentile_curve(histogram: HdrHistogram, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(percentile fraction, latency µs) walked HdrHistogram-style, ending at the maximum."""
    total = histogram.get_total_count()
    last = 1.0 - 1.0 / total if total > 1 else 0.5  # the rarest level the data can show
    levels, values = [], []
    for item in histogram.get_percentile_iterator(5):
        level = item.percentile_level_iterated_to / 100.0
        if level >= last:
            break
        levels.append(level)
        values.append(histogram.get_highest_equivalent_value(item.value_iterated_to) * scale)
    levels.append(last)
    values.append(histogram.get_max_value() * scale)
    return np.asarray(levels), np.asarray(values)


def pick_spectrum_case(frame: pd.DataFrame, requested: str | None = None) -> tuple[str | None, str]:
    """The case whose latency spectrum to draw, and a note on how it was chosen."""
    cases = case_table(frame)
    with_hist = set(frame.loc[~frame["excluded"], "case"]) if not frame.empty else set()
    if requested:
        if requested in with_hist:
            return requested, f"chosen point: {requested}"
        note = f"requested point {requested!r} has no valid trial; "
    else:
        note = ""
    closed = cases[(cases["mode"] != "open") & cases["case"].isin(with_hist)]
    if closed.empty:
        return None, note + "no closed-loop case with valid trials"
    echo = closed[closed["group"] == "echo"]
    at_128 = echo[echo["connections"] == 128]
    if not at_128.empty:
        return str(at_128["case"].iloc[0]), note + "default point: echo at 128 connections"
    pool = echo if not echo.empty else closed
    pick = pool.sort_values("connections", ascending=False)["case"].iloc[0]
    return str(pick), note + "default point (echo at 128 connections absent): most connections"
