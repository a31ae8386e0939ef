"""Trial records -> frames: one row per trial (the summary), one per case, and per (case, model)
aggregates of the valid trials.

Records come from the one loader (``bench.store.load_run_folder``), already in the current
format, so every field is read from its documented place. Nothing here measures anything: every
figure in a report can be traced back to one trial file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import metrics
from bench.analysis import validity
from bench.sampling import held_connections
from bench.store import Case, RecordError, TrialSpec, load_run_folder, record_keys

NATIVE = "native"  # the reference ceiling: shown everywhere, never in a verdict
C10K_GROUP = "c10k"  # its cases get the report's C10K section, not the sweep tables

# a trial's identity: the spec's own record fields (declared once, with TrialSpec), then what
# the runner records about where it ran, and how it ended
ID_FIELDS = [*TrialSpec.record_fields(), "interpreter_version", "gil_enabled",
             "free_threaded_build", "placement", "status", "failure"]
# a case's columns: its record fields but its name (the key) and the rate (a sweep point's is
# its model's: the fraction of that model's own closed-loop maximum)
CASE_FIELDS = [key for key in record_keys(Case) if key not in ("case", "rate")]
FAMILY_FIELDS = ["mode", "mix", "payload_bytes", "pipeline"]  # a case minus connections
SERIES_FIELDS = ["group", "connections", "mix", "payload_bytes", "pipeline"]  # a sweep minus rate
DERIVED_FIELDS = [
    "throughput_rps", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us",
    "cpu_us_per_request", "rss_per_connection_bytes", "ctx_switches_per_request",
    "error_rate", "errors", "client_saturated", "server_cpu_percent", "requests",
]
METRICS = [m.name for m in metrics.METRICS.values() if m.summary]  # bench/metrics.py
NATIVE_RATIOS = ["throughput_rps", "cpu_us_per_request"]  # shown as "x native" beside them
CONNECTION_FIGURES = ["connections_established", "idle_established", "idle_alive",
                      "over_capacity", "connect_p99_us", "connect_max_us", "rss_max",
                      "threads_max", "fds_max", "idle_connections", "held_max",
                      "rss_per_held_connection_bytes"]
# the workloads' figures (docs/results-format.md: churn, slowloris, head-of-line), in the
# trials where the workload ran
WORKLOAD_FIGURES = ["connections_per_s", "churn_connect_p99_us", "cpu_us_per_connection",
                    "slowloris_held", "slowloris_errors", "reference_p99_us",
                    "reference_kind_p99_us", "p99_ratio_to_reference"]
# the ratio to the reference stands where this trial's cheap p99 and its reference's p99 do
RATIO_OK = "ok_p99_ratio_to_reference"
_CONN_PART = re.compile(r"-c\d+(?=-|$)")
_RATE_PART = re.compile(r"-r\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:pct)?$")


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


def load_run(run_dir: Path) -> Run:
    """Read a run folder (unreadable trial files are listed) and build its summary frame."""
    try:
        folder = load_run_folder(Path(run_dir))
    except RecordError as error:
        raise ReportError(str(error)) from None
    frame = summary_frame(list(folder.trials.values()))
    return Run(folder.run_dir, folder.meta, folder.trials, frame, folder.unreadable)


# ---------------------------------------------------------------- one row per trial


def _cell(value: Any) -> Any:
    """A record value as a frame cell: lists (arguments) and tables (environment) as text."""
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict):
        return " ".join(f"{key}={item}" for key, item in value.items())
    return value


def _client_cpu_max(record: dict[str, Any]) -> float:
    """The busiest swarm worker's CPU percent (the swarm reports one figure per worker)."""
    cpu = ((record.get("swarm") or {}).get("client") or {}).get("cpu_percent") or []
    numbers = [c for c in cpu if isinstance(c, int | float)]
    return float(max(numbers)) if numbers else math.nan


def _trial_row(record: dict[str, Any]) -> dict[str, Any]:
    """One summary row: identity fields, every derived figure, validity and its reasons."""
    row: dict[str, Any] = {name: _cell(record.get(name)) for name in ID_FIELDS}
    derived = record.get("derived") or {}
    for name in DERIVED_FIELDS + sorted(set(derived) - set(DERIVED_FIELDS)):
        row[name if name not in row else f"derived_{name}"] = derived.get(name)
    row["error_kinds"] = validity.error_kinds(record)
    row["client_cpu_percent_max"] = _client_cpu_max(record)
    row["saturation_reasons"] = validity.saturation_reasons(record)
    row.update(_connection_figures(record))
    row["reference_trial"] = record.get("reference_trial")
    row.update(validity.judge(record).columns())
    return row


def _connection_figures(record: dict[str, Any]) -> dict[str, Any]:
    """What a many-connection trial needs besides the derived figures: connections the swarm
    established (busy, idle, idle still open at the end), ERROR 4 turn-aways, the slowest
    connects, the server's peak RSS, threads and descriptors, the most connections it held
    (descriptors over those it had before the load) and its RSS growth per held one."""
    swarm = record.get("swarm") or {}
    server = record.get("server") or {}
    held = held_connections(server)
    rss_held = None
    if held and isinstance(server.get("rss_max"), int) and server.get("rss_idle"):
        rss_held = max(0, server["rss_max"] - server["rss_idle"]) / held
    idle = swarm.get("idle") or {}
    errors = swarm.get("errors") or {}
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
    """One row per trial, with ``variant`` (the series label) and the validity columns."""
    frame = pd.DataFrame([_trial_row(r) for r in records])
    if frame.empty:
        frame = pd.DataFrame(columns=ID_FIELDS + DERIVED_FIELDS + validity.COLUMNS)
    for name in METRICS + ["errors", "requests", "rate", "offered_fraction", "connections",
                           *CONNECTION_FIGURES, *WORKLOAD_FIGURES]:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    for name in ("failed", "client_saturated", "has_errors", "excluded", "littles_law_broken",
                 "client_lagged",
                 *[validity.ok_column(m) for m in validity.JUDGED]):
        frame[name] = frame[name].astype(bool)
    frame["queues_at"] = pd.to_numeric(frame["queues_at"], errors="coerce")
    frame["littles_law_ratio"] = pd.to_numeric(frame["littles_law_ratio"], errors="coerce")
    frame["variant"] = _variants(frame)
    frame[RATIO_OK] = _reference_ok(frame)
    return frame


def _reference_ok(frame: pd.DataFrame) -> list[bool]:
    """Whether each trial's ``p99_ratio_to_reference`` stands: its own cheap requests' p99 and
    its reference trial's p99 are both valid."""
    if frame.empty or "reference_trial" not in frame:
        return [False] * len(frame)
    reference = dict(zip(frame["trial_id"], frame[validity.ok_column("p99_us")], strict=True))
    own = frame[validity.ok_column("reference_kind_p99_us")]
    return [bool(ok) and bool(reference.get(ref, False))
            for ok, ref in zip(own, frame["reference_trial"], strict=True)]


def valid_figures(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every figure ``validity.judge`` left out set to NaN: what medians,
    charts and verdicts read (a saturated trial keeps its CPU per request, not its p99)."""
    masked = frame.copy()
    for metric in validity.JUDGED:
        column = validity.ok_column(metric)
        if metric in masked and column in masked:
            masked[metric] = masked[metric].where(masked[column])
    if "p99_ratio_to_reference" in masked and RATIO_OK in masked:
        masked["p99_ratio_to_reference"] = masked["p99_ratio_to_reference"].where(
            masked[RATIO_OK])
    return masked


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


def is_native(variant: str) -> bool:
    """Whether a series label is the native reference model ('native', 'native@tag')."""
    return re.split(r"[ @(]", variant, maxsplit=1)[0] == NATIVE


# ---------------------------------------------------------------- cases and aggregates


def case_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case (in run order) with its scenario fields, family and labels."""
    if frame.empty:
        return pd.DataFrame(columns=["case", *CASE_FIELDS, "family", "family_label", "order",
                                     "series", "series_label", "rate_median"])
    first = frame.drop_duplicates("case").reset_index(drop=True)
    cases = first[["case", *CASE_FIELDS]].copy()
    cases["order"] = range(len(cases))
    cases["family"] = [_key(r, FAMILY_FIELDS) for r in cases.itertuples()]
    cases["family_label"] = [_CONN_PART.sub("", str(c)) for c in cases["case"]]
    cases["series"] = [_key(r, SERIES_FIELDS) for r in cases.itertuples()]
    cases["series_label"] = [_RATE_PART.sub("", str(c)) for c in cases["case"]]
    # the median offered rate over the case's trials: every model's own for equal load
    cases["rate_median"] = cases["case"].map(
        pd.to_numeric(frame["rate"], errors="coerce").groupby(frame["case"]).median())
    return cases


def _key(row: Any, names: list[str]) -> str:
    """A hashable, printable key from some fields of a row."""
    return "|".join(str(getattr(row, n)) for n in names)


def spread_flags(flags: pd.Series) -> str:
    """The distinct markers of some trials, in a stable order."""
    return "".join(sorted(set("".join(flags))))


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (case, variant): counts, markers, and per metric the median, min, max, quartiles
    and count (``<metric>_n``) of its valid figures, and the ratios to native's medians."""
    columns = ["case", "variant", "n_total", "n_valid", "n_excluded", "n_failed", "flags"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    counts = frame.groupby(["case", "variant"], sort=False).agg(
        n_total=("trial_id", "size"),
        n_excluded=("excluded", "sum"),
        n_failed=("failed", "sum"),
        flags=("flags", spread_flags),
    )
    present = [m for m in METRICS if m in frame]
    grouped = valid_figures(frame).groupby(["case", "variant"], sort=False)[present]
    parts = [counts,
             grouped.median().add_suffix("_median"),
             grouped.min().add_suffix("_min"),
             grouped.max().add_suffix("_max"),
             grouped.quantile(0.25).add_suffix("_q1"),
             grouped.quantile(0.75).add_suffix("_q3"),
             grouped.count().add_suffix("_n")]
    table = pd.concat(parts, axis=1).reset_index()
    table["n_valid"] = table["n_total"] - table["n_excluded"]
    return _with_native_ratios(table, frame)


def _with_native_ratios(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``<metric>_x_native``: the median over native's median in the same case (the figure
    that travels between machines and days). Where native's throughput is known only from
    trials whose client saturated, native was at least that fast: the ratio is an upper
    bound, and ``throughput_rps_x_native_bound`` says so ('≤')."""
    reference = native_reference(frame)
    for metric in NATIVE_RATIOS:
        ratios, bounds = [], []
        for row in table.itertuples(index=False):
            base, bound = reference.get((row.case, metric), (math.nan, ""))
            value = getattr(row, f"{metric}_median")
            ratios.append(value / base if base and base == base else math.nan)
            bounds.append(bound if value == value else "")
        table[f"{metric}_x_native"] = ratios
        table[f"{metric}_x_native_bound"] = bounds
    return table


def native_reference(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[float, str]]:
    """(case, metric) -> (native's median, '' or '≤'): its valid figures' median, else (for
    throughput) the median of its client-saturated trials, a lower bound of its capacity."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if frame.empty:
        return out
    natives = frame[[is_native(str(v)) for v in frame["variant"]]]
    for case, rows in natives.groupby("case", sort=False):
        for metric in NATIVE_RATIOS:
            valid = rows.loc[rows[validity.ok_column(metric)], metric].dropna()
            if not valid.empty:
                out[(str(case), metric)] = (float(valid.median()), "")
                continue
            bounded = rows.loc[rows["client_saturated"] & ~rows["has_errors"]
                               & rows["queues_at"].isna(), metric].dropna()
            if metric == "throughput_rps" and not bounded.empty:
                out[(str(case), metric)] = (float(bounded.median()), "≤")
    return out
