"""The report of a run folder: summary.csv, charts/*.png, report.md and report.html.

``python -m bench report RUN_DIR`` reads the trial records the runner wrote and renders
everything again; it never measures. Trials whose client
saturated or that had errors are flagged in every table and left out of medians and verdicts;
failed trials are listed with their failure and the tail of their stderr.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from bench.analysis.frames import (
    C10K_GROUP,
    ID_FIELDS,
    ReportError,
    Run,
    aggregate,
    case_table,
    load_run,
)
from bench.analysis.histograms import merged_histogram, percentile_curve, pick_spectrum_case
from bench.analysis.sweeps import SweepResult, sweep_results
from bench.analysis.validity import MARK_ERRORS, MARK_FAILED, MARK_NOTES, MARK_SATURATED
from bench.analysis.verdicts import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    DEFAULT_MARGIN,
    CaseVerdict,
    closed_verdicts,
    compare,
    sweep_verdicts,
)
from bench.report import charts

STDERR_LINES = 20


# ---------------------------------------------------------------- a tiny document model


@dataclass
class Table:
    """A table of already formatted cells; ``numeric`` columns are right-aligned."""

    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    footnotes: list[str] = field(default_factory=list)


@dataclass
class Pre:
    """Preformatted text (a stderr tail) under a short heading."""

    heading: str
    text: str


@dataclass
class Section:
    """A titled part of the report: paragraphs (str), tables, charts and preformatted text."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2
    collapsed: bool = False  # HTML only: folded into <details>


@dataclass
class Report:
    """Everything a rendering produced, for the caller and the terminal summary."""

    run: Run
    title: str
    sections: list[Section]
    verdicts: list[CaseVerdict]
    charts: list[charts.Chart]
    paths: dict[str, Path]
    sweeps: list[SweepResult]
    aggregate: pd.DataFrame  # per (case, variant): counts and figures of valid trials


# ---------------------------------------------------------------- number formatting


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_rate(value: Any) -> str:
    """Requests per second with a thousands separator ('—' when missing)."""
    return "—" if _missing(value) else f"{value:,.0f}"


def fmt_us(value: Any) -> str:
    """A latency in µs as '850 µs', '1.23 ms' or '2.5 s'."""
    if _missing(value):
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.3g} s"
    if value >= 1e3:
        return f"{value / 1e3:.3g} ms"
    return f"{value:.3g} µs"


def fmt_bytes(value: Any) -> str:
    """Bytes as '512 B', '12.3 KiB', '4.1 MiB'."""
    if _missing(value):
        return "—"
    for limit, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= limit:
            return f"{value / limit:.3g} {unit}"
    return f"{value:.0f} B"


def fmt_num(value: Any, digits: int = 3) -> str:
    """A plain figure to ``digits`` significant digits."""
    return "—" if _missing(value) else f"{value:.{digits}g}"


def fmt_spread(row: Any, metric: str, fmt: Any) -> str:
    """'median [min–max]' from an aggregate row, or just the median with one repetition."""
    median = row[f"{metric}_median"]
    low, high = row[f"{metric}_min"], row[f"{metric}_max"]
    if _missing(median):
        return "—"
    if row["n_valid"] > 1 and low != high:
        return f"{fmt(median)} [{fmt(low)}–{fmt(high)}]"
    return fmt(median)


# ---------------------------------------------------------------- building the document


def build_report(
    run_dir: Path,
    *,
    spectrum_case: str | None = None,
    slo_ms: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Report:
    """Read the run folder, write summary.csv and the charts, and assemble the document."""
    run = load_run(Path(run_dir))
    frame, cases = run.frame, case_table(run.frame)
    agg = aggregate(frame)
    sweeps = sweep_results(run, None if slo_ms is None else slo_ms * 1000.0)
    verdicts = closed_verdicts(run, margin) + sweep_verdicts(sweeps, margin)
    paths = {"summary": write_summary(run)}
    chart_list = draw_charts(run, agg, cases, sweeps, spectrum_case)
    title = f"concbench report: {run.meta.get('scenario', '?')} ({run.meta.get('run_id', '?')})"
    sections = [
        _overview(run),
        _verdict_section(verdicts, frame, margin, sweeps),
        _environment_section(run),
        Section("Charts", list(chart_list)),
        *_interpreter_sections(run, margin),
        *_c10k_sections(run),
        *_case_sections(agg, cases),
        *_sweep_sections(sweeps),
        *_flagged_sections(run),
        _trials_section(frame),
    ]
    report = Report(run, title, sections, verdicts, chart_list, paths, sweeps, agg)
    paths["markdown"] = run.run_dir / "report.md"
    paths["markdown"].write_text(to_markdown(report))
    paths["html"] = run.run_dir / "report.html"
    paths["html"].write_text(to_html(report))
    return report


def write_summary(run: Run) -> Path:
    """summary.csv: one row per trial, identity fields first, every derived figure, flags."""
    frame = run.frame
    first = [c for c in [*ID_FIELDS, "variant"] if c in frame]
    last = ["error_kinds", "client_cpu_percent_max", "client_saturated", "has_errors",
            "failed", "excluded", "flags", "exclusion_reason"]
    middle = [c for c in frame.columns if c not in first and c not in last]
    path = run.run_dir / "summary.csv"
    frame[first + middle + [c for c in last if c in frame]].to_csv(path, index=False)
    return path


def draw_charts(
    run: Run, agg: pd.DataFrame, cases: pd.DataFrame, sweeps: list[SweepResult],
    spectrum_case: str | None,
) -> list[charts.Chart]:
    """Every chart the run has data for, written to RUN_DIR/charts (old PNGs replaced)."""
    out = run.run_dir / "charts"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    if run.frame.empty:
        return []
    palette = charts.Palette.for_variants(list(dict.fromkeys(run.frame["variant"])))
    drawn = [charts.connections_chart(s, agg, cases, palette, out)
             for s in charts.CONNECTION_CHARTS]
    drawn.append(_spectrum(run, palette, out, spectrum_case))
    drawn.append(charts.mixes_chart(agg, cases, palette, out))
    drawn.append(charts.c10k_chart(run.frame, palette, out))
    drawn += [charts.sweep_chart(s, palette, out, i) for i, s in enumerate(sweeps)]
    return [c for c in drawn if c is not None]


def _spectrum(
    run: Run, palette: charts.Palette, out: Path, requested: str | None
) -> charts.Chart | None:
    case, note = pick_spectrum_case(run.frame, requested)
    if case is None:
        return None
    rows = run.frame[(run.frame["case"] == case) & ~run.frame["excluded"]]
    curves = {}
    for variant, group in rows.groupby("variant", sort=False):
        merged = merged_histogram([run.trials[t] for t in group["trial_id"]])
        if merged is not None:
            curves[variant] = percentile_curve(*merged)
    ordered = {v: curves[v] for v in palette.styles if v in curves}
    return charts.spectrum_chart(ordered, case, note, palette, out)


def _overview(run: Run) -> Section:
    meta, frame = run.meta, run.frame
    planned = len(meta.get("plan") or [])
    lines = [
        f"Scenario {meta.get('scenario', '?')}, run {meta.get('run_id', '?')}: "
        f"status {meta.get('status', 'unknown')}, started {meta.get('started_at', '?')}, "
        f"finished {meta.get('finished_at') or 'not finished'}.",
        f"{len(frame)} trial records" + (f" of {planned} planned" if planned else "") + ".",
    ]
    if planned and len(frame) < planned:
        lines.append(f"The run is incomplete: {planned - len(frame)} planned trial(s) have no "
                     "record (python -m bench run --resume RUN_DIR completes it).")
    lines.append(_exclusion_sentence(frame))
    busy = _busy_machine(meta.get("environment") or {})
    if busy:
        lines.append(busy)
    notes = (meta.get("scenario_spec") or {}).get("notes") or []
    lines += [f"Note: {note}" for note in notes]
    if run.unreadable:
        lines.append("Unreadable trial files (ignored): " + "; ".join(run.unreadable) + ".")
    return Section("Overview", lines)


def _busy_machine(env: dict[str, Any]) -> str:
    """A warning when the load average says other work shared the CPUs, else ''."""
    cpus = env.get("cpu_count") or len(env.get("cpus_usable") or []) or None
    before, after = env.get("load_average_before"), env.get("load_average_after")
    if not cpus or not isinstance(before, list | tuple) or not before:
        return ""
    heavy_before = before[0] > 0.5 * cpus
    heavy_after = isinstance(after, list | tuple) and bool(after) and after[0] > 1.5 * cpus
    if not (heavy_before or heavy_after):
        return ""
    seen = f"{before[0]:g} before" + (f", {after[0]:g} after" if after else "")
    return (f"Warning: the machine was busy (1-minute load average {seen}, on {cpus} CPUs): "
            "other work shared the CPUs, so the figures are noisy and may be skewed; "
            "compare them with care, or run again on a quiet machine.")


def _exclusion_sentence(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "No trial records yet."
    excluded = int(frame["excluded"].sum())
    if not excluded:
        return "No trial was excluded: no failure, no errors, no saturated client."
    return (
        f"{excluded} of {len(frame)} trials are excluded from every median, chart and verdict: "
        f"{int(frame['failed'].sum())} failed {MARK_FAILED}, "
        f"{int(frame['client_saturated'].sum())} with a saturated client {MARK_SATURATED}, "
        f"{int(frame['has_errors'].sum())} with errors {MARK_ERRORS}."
    )


def _marker_notes(marks: str) -> list[str]:
    return [f"{m} {MARK_NOTES[m]}; excluded from medians and verdicts." for m in MARK_NOTES
            if m in marks]


def _verdict_section(
    verdicts: list[CaseVerdict], frame: pd.DataFrame, margin: float,
    sweeps: list[SweepResult],
) -> Section:
    flags = _flags_by(frame)
    columns = ["case", "metric", "best", "best value", "runner-up", "runner-up value", "gap",
               "verdict",
               "native (ceiling)", "excluded", "basis"]
    rows, used = [], ""
    for v in verdicts:
        best = _with_flags(v.best, flags.get((v.case, v.best), ""))
        runner = _with_flags(v.runner_up, flags.get((v.case, v.runner_up), ""))
        used += flags.get((v.case, v.best), "") + flags.get((v.case, v.runner_up), "")
        floor = "≥ " if v.best_is_floor else ""
        rows.append([
            v.case, v.metric, best, floor + fmt_rate(v.best_value), runner,
            fmt_rate(v.runner_up_value), _gap(v), _outcome(v), fmt_rate(v.native_value),
            str(v.excluded), v.basis + (f"; {v.note}" if v.note else ""),
        ])
    table = Table(columns, rows, numeric={3, 5, 6, 8, 9})
    table.footnotes = _marker_notes(used)
    text = [
        "The best model per case: by median throughput of the valid repetitions for closed-loop "
        "cases, by the highest offered rate whose p99 stayed under the SLO for open-loop sweeps. "
        "native is the reference ceiling and never competes.",
        "Ties inside the noise: with two or more valid repetitions on both sides, a model ties "
        f"the best when the {CONFIDENCE:.0%} percentile-bootstrap interval of the "
        "difference of their median throughputs contains zero (scipy.stats.bootstrap, "
        f"{BOOTSTRAP_RESAMPLES} resamples, seeded); with a single repetition, when it is "
        f"within a {margin:.0%} relative margin of the best (the margin is stated in the basis "
        "column wherever it was used).",
    ]
    if sweeps:
        slos = "; ".join(f"{s.label}: p99 ≤ {fmt_us(s.slo_us)} ({s.slo_source})"
                         for s in sweeps)
        text.append(f"Sweep SLO: {slos}. A sweep's rate is the highest offered rate up to which "
                    "every point met the SLO with a valid measurement; a point with errors, a "
                    "saturated client or a failure ends the walk.")
    if not verdicts:
        c10k = not frame.empty and bool((frame["group"] == C10K_GROUP).any())
        text.append("No verdict: the C10K cases are compared in their own section." if c10k
                    else "No case has a valid trial yet.")
        return Section("Verdict", text)
    return Section("Verdict", [*text, table])


def _flags_by(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(case or sweep label, variant) -> the markers of its trials."""
    if frame.empty:
        return {}
    labels = case_table(frame).set_index("case")
    out: dict[tuple[str, str], str] = {}
    for row in frame.itertuples():
        keys = [(row.case, row.variant)]
        if row.mode == "open":
            keys.append((labels.loc[row.case, "series_label"], row.variant))
        for key in keys:
            out[key] = "".join(sorted(set(out.get(key, "") + row.flags)))
    return out


def _with_flags(name: str | None, marks: str) -> str:
    return "—" if name is None else f"{name}{marks}"


def _gap(v: CaseVerdict) -> str:
    if _missing(v.best_value) or _missing(v.runner_up_value) or not v.best_value:
        return "—"
    return f"{(v.best_value - v.runner_up_value) / v.best_value:.1%}"


def _outcome(v: CaseVerdict) -> str:
    if v.outcome == "none":
        return "no verdict"
    if v.outcome == "tie":
        return "tie: " + ", ".join([v.best or "", *v.tied])
    return f"{v.best} wins" if v.runner_up else f"{v.best} (alone)"


def _environment_section(run: Run) -> Section:
    env = run.meta.get("environment") or {}
    rows = [[str(k), fmt_bytes(v) if str(k).endswith("_bytes") and isinstance(v, int | float)
             else _env_value(v)] for k, v in env.items()]
    if not rows:
        return Section("Environment", ["run.json records no environment."])
    return Section("Environment", [Table(["item", "value"], rows)])


def _env_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_env_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_env_value(v) for v in value)
    return "—" if value is None else str(value)


CASE_COLUMNS = [
    ("throughput (req/s)", "throughput_rps", fmt_rate),
    ("p50", "p50_us", fmt_us),
    ("p99", "p99_us", fmt_us),
    ("p99.9", "p99_9_us", fmt_us),
    ("server CPU / req", "cpu_us_per_request", fmt_us),
    ("RSS / conn", "rss_per_connection_bytes", fmt_bytes),
    ("ctx sw / req", "ctx_switches_per_request", fmt_num),
    ("server CPU %", "server_cpu_percent", lambda v: fmt_num(v, 3)),
]


# ---------------------------------------------------------------- interpreters


def _interpreter_sections(run: Run, margin: float) -> list[Section]:
    """When the run has several interpreters: what each is, and each model's figures under
    each, with the throughput ratio to the first interpreter and whether it is noise."""
    frame = run.frame
    if frame.empty or frame["interpreter_tag"].dropna().nunique() < 2:
        return []
    tags = list(dict.fromkeys(frame["interpreter_tag"].dropna()))
    described = {str(d.get("tag")): d for d in
                 (run.meta.get("environment") or {}).get("interpreters") or []}
    about = Table(["interpreter", "version", "implementation", "GIL", "free-threaded build",
                   "environment", "path"],
                  [[tag, str(d.get("version", "—")), str(d.get("implementation", "—")),
                    _gil(d.get("gil_enabled")), _yes_no(d.get("free_threaded_build")),
                    " ".join(f"{k}={v}" for k, v in (d.get("env") or {}).items()) or "—",
                    str(d.get("path", "—"))]
                   for tag, d in ((t, described.get(t, {})) for t in tags)])
    first = tags[0]
    twins = _gil_twins(tags, described)
    rows, marks = [], ""
    cases = case_table(frame)
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    for case in closed.itertuples():
        here = frame[frame["case"] == case.case]
        for model, trials in here.groupby("server_model", sort=False):
            marks += "".join(trials["flags"])
            valid = {tag: _valid(trials[trials["interpreter_tag"] == tag], "throughput_rps")
                     for tag in tags}
            for tag in tags:
                mine = trials[trials["interpreter_tag"] == tag]
                if mine.empty:
                    continue
                row = [case.case, str(model), tag, _gil(_gil_of(mine, described.get(tag, {}))),
                       _median_cell(mine, "throughput_rps", fmt_rate),
                       "1×" if tag == first else _ratio(valid[first], valid[tag], margin)]
                if twins:
                    twin = twins.get(tag)
                    row.append(_ratio(valid[twin], valid[tag], margin) if twin else "")
                rows.append([*row, _median_cell(mine, "p99_us", fmt_us),
                             _median_cell(mine, "server_cpu_percent", fmt_num)])
    columns = ["case", "model", "interpreter", "GIL", "req/s", f"vs {first}",
               *(["vs same build, GIL on"] if twins else []), "p99", "server CPU %"]
    table = Table(columns, rows, numeric=set(range(4, len(columns))))
    table.footnotes = _marker_notes(marks) + [
        "Cells: median [min–max] of the valid repetitions. 'vs' is the ratio of median "
        "throughputs; 'noise' when they cannot be told apart (bootstrap interval of the "
        f"difference with two or more repetitions each, else a {margin:.0%} margin).",
        "Interpreters can differ in single-thread speed as well as in the GIL: a "
        "single-threaded model (epoll) run under each is the control for that."]
    if twins:
        table.footnotes.append("vs same build, GIL on: the same executable with its GIL "
                               "enabled (PYTHON_GIL=1), so the ratio is the GIL's cost alone.")
    return [Section("Interpreters", [
        "The same models under each interpreter the scenario listed (series are labelled "
        "model@interpreter in every table and chart).", about, table])]


def _gil_twins(tags: list[str], described: dict[str, dict[str, Any]]) -> dict[str, str]:
    """GIL-off interpreter tag -> the tag of the same executable run with its GIL on (a
    free-threaded build under PYTHON_GIL=1): the ratio between them is the GIL's alone."""
    twins = {}
    for tag in tags:
        mine = described.get(tag, {})
        if mine.get("gil_enabled") is not False:
            continue
        for other in tags:
            theirs = described.get(other, {})
            if theirs.get("gil_enabled") and theirs.get("path") == mine.get("path"):
                twins[tag] = other
                break
    return twins


def _valid(trials: pd.DataFrame, metric: str) -> list[float]:
    return trials.loc[~trials["excluded"], metric].dropna().tolist()


def _gil_of(trials: pd.DataFrame, described: dict[str, Any]) -> Any:
    """Whether the GIL was enabled: as the run described the interpreter, else its trials."""
    if described.get("gil_enabled") is not None:
        return described["gil_enabled"]
    values = trials["gil_enabled"].dropna() if "gil_enabled" in trials else pd.Series([])
    return bool(values.iloc[0]) if not values.empty else None


def _gil(value: Any) -> str:
    return "—" if value is None else ("enabled" if value else "disabled")


def _yes_no(value: Any) -> str:
    return "—" if value is None else ("yes" if value else "no")


def _median_cell(trials: pd.DataFrame, metric: str, fmt: Any) -> str:
    values = trials.loc[~trials["excluded"], metric].dropna()
    if values.empty:
        return "—" + "".join(sorted(set("".join(trials["flags"]))))
    if len(values) > 1 and values.min() != values.max():
        return f"{fmt(values.median())} [{fmt(values.min())}–{fmt(values.max())}]"
    return fmt(values.median())


def _ratio(base: list[float], other: list[float], margin: float) -> str:
    """'1.85× (clear)' or '0.98× (noise)': the other's median throughput over the base's."""
    if not base or not other or not np.median(base):
        return "—"
    ratio = float(np.median(other) / np.median(base))
    high, low = (other, base) if ratio >= 1 else (base, other)
    tie, _basis = compare(high, low, margin)
    return f"{ratio:.2f}× ({'noise' if tie else 'clear'})"


# ---------------------------------------------------------------- C10K


def _c10k_sections(run: Run) -> list[Section]:
    """Per C10K case: each model's busy-connection latency, server CPU and memory per
    connection, the connections it really held, and its errors by kind (ERROR 4 included:
    turning connections away is a result here, not a failed run)."""
    frame = run.frame
    rows = frame[frame["group"] == C10K_GROUP] if not frame.empty else frame
    if rows.empty:
        return []
    sections = [Section("C10K", [
        "Many connections on one server: every trial is shown, errors included (a model that "
        "turns connections away with ERROR 4 counts them as over_capacity). Latency is the "
        "busy connections' only, from the open-loop schedule. Held: the most connections "
        "the server had open at once (its descriptors over those it had before the load). "
        "RSS per connection: the growth of its resident memory under load over the "
        "connections the swarm held (busy and idle), and over those the server held (the "
        "two differ where it turned connections away)."])]
    for case, trials in rows.groupby("case", sort=False):
        first = trials.iloc[0]
        idle = int(first["idle_connections"]) if first["idle_connections"] == \
            first["idle_connections"] and first["idle_connections"] else 0
        body = [_c10k_row(str(variant), group)
                for variant, group in trials.groupby("variant", sort=False)]
        body.sort(key=lambda row: (row[0] == "failed", row[1]))
        columns = ["model", "trials ok/n", "established", "held", "req/s", "p50", "p99",
                   "server CPU %", "RSS / conn", "RSS / held conn", "RSS (max)",
                   "threads (max)", "over_capacity", "errors", "slowest connect"]
        table = Table(columns, [row[2:] for row in body], numeric={*range(1, 13), 14})
        table.footnotes = [
            "Cells: median over the trials that ran (errors included); established: the busy "
            "+ idle connections the swarm got (and how many idle ones were still open when "
            "the window ended).",
            "errors: every kind the swarm counted, over_capacity included; a slowest connect "
            "of a second or more is a SYN retransmission (the accept queue overflowed)."]
        load = f"{int(first['connections']):,} busy connections"
        if idle:
            load += f" + {idle:,} idle ones"
        rate = first["rate"]
        if rate == rate and rate:
            load += f", open loop at {rate:,.0f} req/s in all"
        sections.append(Section(f"{case} ({load})", [table], level=3))
    return sections


def _c10k_row(variant: str, trials: pd.DataFrame) -> list[Any]:
    """[sort keys..., cells...] for one model in a C10K case."""
    ran = trials[~trials["failed"]]
    ok = f"{len(ran)}/{len(trials)}"
    if ran.empty:
        why = "; ".join(str(f) for f in trials["failure"].dropna().unique()) or "failed"
        return ["failed", 0.0, variant + MARK_FAILED, ok, *["—"] * 11, f"failed: {why}", "—"]

    def med(name: str) -> float:
        values = pd.to_numeric(ran[name], errors="coerce").dropna()
        return float(values.median()) if not values.empty else math.nan

    established = med("connections_established")
    idle, alive = med("idle_established"), med("idle_alive")
    held = fmt_rate(established)
    if idle == idle and idle:
        held = f"{fmt_rate(established + idle)} ({fmt_rate(alive)} idle left)"
    kinds = "; ".join(sorted({k for k in ran["error_kinds"] if k}))
    errors = fmt_rate(med("errors")) + (f" ({kinds})" if kinds and med("errors") else "")
    per_held = med("rss_per_held_connection_bytes")
    p99 = med("p99_us")
    return ["ok", p99 if p99 == p99 else math.inf, variant + "".join(sorted(set(
        "".join(ran["flags"])))), ok, held, fmt_rate(med("held_max")), fmt_rate(med(
            "throughput_rps")), fmt_us(med("p50_us")), fmt_us(p99),
        fmt_num(med("server_cpu_percent")), fmt_bytes(med("rss_per_connection_bytes")),
        fmt_bytes(per_held), fmt_bytes(med("rss_max")), fmt_rate(med("threads_max")),
        fmt_rate(med("over_capacity")), errors, fmt_us(med("connect_max_us"))]


def _case_sections(agg: pd.DataFrame, cases: pd.DataFrame) -> list[Section]:
    """One table per closed-loop case: every model's medians and spreads."""
    sections = []
    closed = cases[cases["mode"] != "open"]
    for case in closed.itertuples():
        rows = agg[agg["case"] == case.case]
        rows = rows.assign(rank=-rows["throughput_rps_median"].fillna(-1)).sort_values("rank")
        body, marks = [], ""
        for _, row in rows.iterrows():
            marks += row["flags"]
            body.append([f"{row['variant']}{row['flags']}", f"{row['n_valid']}/{row['n_total']}"]
                        + [fmt_spread(row, metric, fmt) for _, metric, fmt in CASE_COLUMNS])
        table = Table(["model", "valid/trials"] + [c for c, _, _ in CASE_COLUMNS], body,
                      numeric=set(range(1, 2 + len(CASE_COLUMNS))))
        table.footnotes = _marker_notes(marks) + ["Cells: median [min–max] of valid "
                                                  "repetitions."]
        heading = (f"{case.case} ({case.group}: {case.mix}, {case.connections} connections, "
                   f"pipeline {case.pipeline})")
        sections.append(Section(heading, [table], level=3))
    if sections:
        sections.insert(0, Section("Closed-loop cases", []))
    return sections


def _sweep_sections(sweeps: list[SweepResult]) -> list[Section]:
    """Per sweep: each model's p99 at every offered fraction and its rate within the SLO."""
    sections = []
    for sweep in sweeps:
        points, slo_us = sweep.points, sweep.slo_us
        fractions = sorted(points["offered_fraction"].dropna().unique())
        body, marks, floors = [], "", False
        ranked = sorted(sweep.within_slo, key=lambda v: -np.median(sweep.within_slo[v] or [0]))
        for variant in ranked:
            rows = points[points["variant"] == variant]
            by_fraction = {r["offered_fraction"]: r for _, r in rows.iterrows()}
            cells = []
            for fraction in fractions:
                row = by_fraction.get(fraction)
                if row is None:
                    cells.append("")
                    continue
                marks += row["flags"]
                over = " ✱" if row["p99_us_median"] > slo_us else ""
                cells.append(fmt_us(row["p99_us_median"]) + over + row["flags"])
            rates = sweep.within_slo.get(variant) or []
            floor = "≥ " if sweep.ceiling_not_found.get(variant) else ""
            floors = floors or bool(floor)
            body.append([variant, *cells, floor + fmt_rate(np.median(rates) if rates else None)])
        columns = ["model", *[f"p99 at {f:.0%}" for f in fractions], "rate within SLO"]
        table = Table(columns, body, numeric=set(range(1, len(columns))))
        table.footnotes = [f"✱ p99 above the SLO ({fmt_us(slo_us)}).", *_marker_notes(marks)]
        if floors:
            table.footnotes.append("≥ every offered rate met the SLO: the limit lies higher.")
        sections.append(Section(f"Open-loop sweep {sweep.label}", [
            "Offered load as a fraction of each model's own closed-loop maximum; cells are the "
            "median p99 (corrected for coordinated omission) of the valid repetitions.", table,
        ]))
    return sections


def _flagged_sections(run: Run) -> list[Section]:
    """The excluded trials with their figures, and the failed ones with their stderr tail."""
    frame = run.frame
    sections = []
    flagged = frame[frame["excluded"] & ~frame["failed"]]
    if not flagged.empty:
        rows = [[r.trial_id, r.flags, r.exclusion_reason, fmt_rate(r.throughput_rps),
                 fmt_us(r.p99_us), fmt_num(r.client_cpu_percent_max)]
                for r in flagged.itertuples()]
        table = Table(["trial", "flags", "why excluded", "throughput (req/s)", "p99",
                       "client CPU % (max worker)"], rows, numeric={3, 4, 5})
        table.footnotes = _marker_notes("".join(flagged["flags"]))
        sections.append(Section("Flagged trials (excluded)", [
            "These trials' figures are shown here only; they are in no median, chart or "
            "verdict.", table]))
    failed = frame[frame["failed"]]
    if not failed.empty:
        rows = [[r.trial_id, str(r.failure or "no reason recorded")] for r in failed.itertuples()]
        blocks: list[Any] = [Table(["trial", "failure"], rows)]
        for trial_id in failed["trial_id"]:
            tail = _tail(run.trials[trial_id].get("stderr_tail"))
            if tail:
                blocks.append(Pre(f"{trial_id}: stderr tail", tail))
        sections.append(Section(f"Failed trials {MARK_FAILED}", blocks))
    notes = [[tid, str(note)] for tid, record in run.trials.items()
             for note in record.get("notes") or []]
    if notes:
        sections.append(Section("Runner notes", [Table(["trial", "note"], notes)]))
    return sections


def _tail(text: Any) -> str:
    if not text:
        return ""
    return "\n".join(str(text).rstrip().splitlines()[-STDERR_LINES:])


def _trials_section(frame: pd.DataFrame) -> Section:
    rows = [[r.trial_id, r.flags, str(r.status), fmt_rate(r.throughput_rps), fmt_us(r.p99_us),
             fmt_us(r.cpu_us_per_request), fmt_num(r.client_cpu_percent_max),
             r.exclusion_reason] for r in frame.itertuples()]
    table = Table(["trial", "flags", "status", "throughput (req/s)", "p99", "CPU / req",
                   "client CPU % (max worker)", "excluded because"], rows, numeric={3, 4, 5, 6})
    table.footnotes = _marker_notes("".join(frame["flags"])) if not frame.empty else []
    return Section("Every trial", ["Every figure is also in summary.csv.", table],
                   collapsed=True)


# ---------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if i in table.numeric else "---"
                          for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    notes = ["", *[f"{n}  " for n in table.footnotes]] if table.footnotes else []
    return "\n".join([head, rule, *body, *notes])


def to_markdown(report: Report) -> str:
    """report.md: the same content as the HTML, charts referenced relatively."""
    out = [f"# {report.title}", ""]
    for section in report.sections:
        out += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(_md_table(block))
            elif isinstance(block, charts.Chart):
                rel = block.path.relative_to(report.run.run_dir).as_posix()
                out += [f"![{block.title}]({rel})", "", f"*{block.caption}*"]
            elif isinstance(block, Pre):
                out += [f"**{block.heading}**", "", "```", block.text, "```"]
            else:
                out.append(str(block))
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- HTML

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1280px; padding: 0 1.5em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right;
white-space: nowrap; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.foot { font-size: 0.85em; color: #555; margin: 0.1em 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; font-weight: 600; }
"""


def _html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td{" class=num" if i in table.numeric else ""}>{esc(str(c))}</td>'
            for i, c in enumerate(row)
        )
        rows.append(f"<tr>{cells}</tr>")
    notes = "".join(f'<p class="foot">{esc(n)}</p>' for n in table.footnotes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}"


def _html_chart(chart: charts.Chart) -> str:
    data = base64.b64encode(chart.path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(chart.title)}. {html.escape(chart.caption)}"
            "</figcaption></figure>")


def _html_block(block: Any) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, charts.Chart):
        return _html_chart(block)
    if isinstance(block, Pre):
        return f"<p><b>{html.escape(block.heading)}</b></p><pre>{html.escape(block.text)}</pre>"
    return f"<p>{html.escape(str(block))}</p>"


def to_html(report: Report) -> str:
    """report.html: self-contained (inline CSS, images as data URIs, no external reference)."""
    parts = []
    for section in report.sections:
        title = html.escape(section.title)
        body = "\n".join(_html_block(b) for b in section.blocks)
        if section.collapsed:
            parts.append(f"<h{section.level}>{title}</h{section.level}>"
                         f"<details><summary>show</summary>{body}</details>")
        else:
            parts.append(f"<h{section.level}>{title}</h{section.level}>\n{body}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(report.title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- entry points


def render_report(
    run_dir: Path,
    *,
    spectrum_case: str | None = None,
    slo_ms: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Path:
    """Render summary.csv, charts, report.md and report.html in ``run_dir``; the HTML's path."""
    report = build_report(run_dir, spectrum_case=spectrum_case, slo_ms=slo_ms, margin=margin)
    return report.paths["html"]


def summary_table(agg: pd.DataFrame) -> RichTable:
    """Per case and model, the median of the valid repetitions (the same figures as the
    report's and summary.csv's), with how many were valid and why the others were not."""
    table = RichTable(title="Summary (median of valid repetitions)", title_justify="left")
    for name in ("case", "model", "req/s", "p99", "µs CPU/req", "valid", "flags"):
        table.add_column(name, justify="left" if name in ("case", "model", "flags")
                         else "right", no_wrap=name in ("case", "model"))
    last_case = None
    for row in agg.itertuples(index=False):
        table.add_row("" if row.case == last_case else row.case, row.variant,
                      fmt_rate(getattr(row, "throughput_rps_median", None)),
                      fmt_us(getattr(row, "p99_us_median", None)),
                      fmt_num(getattr(row, "cpu_us_per_request_median", None)),
                      f"{row.n_valid}/{row.n_total}", row.flags or "")
        last_case = row.case
    return table


def print_summary(report: Report, console: Console) -> None:
    """The terminal summary: per-case medians, the verdicts, the exclusions, the files."""
    if not report.aggregate.empty:
        console.print(summary_table(report.aggregate))
    table = RichTable(title=report.title, title_justify="left")
    for name in ("case", "best", "value", "verdict", "native", "excluded"):
        table.add_column(name, justify="right" if name in ("value", "native", "excluded")
                         else "left", no_wrap=name == "case")
    for v in report.verdicts:
        table.add_row(v.case, v.best or "—", fmt_rate(v.best_value), _outcome(v),
                      fmt_rate(v.native_value), str(v.excluded))
    if report.verdicts:
        console.print(table)
    for v in report.verdicts:
        if v.note:
            console.print(f"[yellow]{v.case}: {v.note}[/yellow]", soft_wrap=True)
    console.print(_exclusion_sentence(report.run.frame), soft_wrap=True)
    busy = _busy_machine(report.run.meta.get("environment") or {})
    if busy:
        console.print(f"[yellow]{busy}[/yellow]", soft_wrap=True)
    for name, path in report.paths.items():
        console.print(f"{name}: {path}", soft_wrap=True, highlight=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` verb's options."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--spectrum-case", metavar="CASE",
                        help="case of the latency spectrum chart (default: echo at 128 conns)")
    parser.add_argument("--slo-ms", type=float, metavar="MS",
                        help="p99 SLO for sweeps (default: the scenario's setting)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="single-repetition tie margin, relative (default %(default)s)")


def render(run_dir: Path, console: Console, *, spectrum_case: str | None = None,
           slo_ms: float | None = None, margin: float = DEFAULT_MARGIN) -> int:
    """Render RUN_DIR's report and print its summary: 0, or 2 on an unusable folder."""
    try:
        report = build_report(run_dir, spectrum_case=spectrum_case, slo_ms=slo_ms,
                              margin=margin)
    except ReportError as error:
        console.print(f"[red]report: {error}[/red]")
        return 2
    print_summary(report, console)
    return 0


def run(options: argparse.Namespace) -> int:
    """``python -m bench report RUN_DIR``: render it again and print the summary."""
    console = Console(width=None if sys.stdout.isatty() else 150)
    return render(options.run_dir, console, spectrum_case=options.spectrum_case,
                  slo_ms=options.slo_ms, margin=options.margin)
