"""The report of a run folder: answer.json, summary.csv, charts/*.png, report.md and report.html.

Built from the trial records the runner wrote, never measuring; ``add_arguments`` and ``run``
below are the ``report`` verb, which renders it again. The report opens with the answer (the
scorecard, one sentence per workload, how sure), then the verdicts and charts, then the
environment and the detail tables. Which figures count is decided per metric by
``bench.analysis.validity``; every part (the terminal summary, summary.csv, the report,
answer.json) reads that one decision.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from bench.analysis.assurance import Assurance, assurance
from bench.analysis.frames import (
    C10K_GROUP,
    ID_FIELDS,
    ReportError,
    Run,
    aggregate,
    case_table,
    is_native,
    load_run,
)
from bench.analysis.histograms import merged_histogram, percentile_curve, pick_spectrum_case
from bench.analysis.scorecard import model_order, workloads
from bench.analysis.sweeps import SweepResult, sweep_results
from bench.analysis.usl import MIN_LEVELS as USL_MIN_LEVELS
from bench.analysis.usl import UslFit, run_fits
from bench.analysis.validity import JUDGED, MARK_SATURATED, PER_REQUEST_ERROR_LIMIT, ok_column
from bench.analysis.verdicts import DEFAULT_MARGIN, CaseVerdict, all_verdicts
from bench.analysis.workload import Workload
from bench.cli import non_negative, positive
from bench.report import analysis_charts, details, load_charts, plotting, spectrum_charts
from bench.report.answer import write_answer
from bench.report.blocks import (  # noqa: F401  (re-exported: the report's formatting)
    Pre,
    Section,
    Table,
    fmt_bytes,
    fmt_figure,
    fmt_num,
    fmt_rate,
    fmt_ratio,
    fmt_us,
    missing,
)
from bench.report.classics import classics_sections
from bench.report.front import answer_sections
from bench.report.render import to_html as html_document
from bench.report.render import to_markdown as markdown_document
from bench.report.resources import resources_section
from bench.report.spectra import spectra_section
from bench.report.terminal import print_answer
from bench.report.xray import xray_section


@dataclass
class Report:
    """Everything a rendering produced, for the caller and the terminal summary."""

    run: Run
    title: str
    sections: list[Section]
    verdicts: list[CaseVerdict]
    charts: list[plotting.Chart]
    paths: dict[str, Path]
    sweeps: list[SweepResult]
    aggregate: pd.DataFrame  # per (case, variant): counts and figures of valid trials
    workloads: list[Workload] = field(default_factory=list)
    assurance: Assurance | None = None


# ---------------------------------------------------------------- building the document


def build_report(
    run_dir: Path,
    *,
    spectrum_case: str | None = None,
    slo_ms: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> Report:
    """Read the run folder; write answer.json, summary.csv, the charts, report.md and .html."""
    run = load_run(Path(run_dir))
    frame, cases = run.frame, case_table(run.frame)
    agg = aggregate(frame)
    sweeps = sweep_results(run, None if slo_ms is None else slo_ms * 1000.0)
    verdicts = all_verdicts(run, sweeps, margin)
    items = workloads(run, verdicts, sweeps, margin)
    sure = assurance(run)
    paths = {"summary": write_summary(run),
             "answer": write_answer(run.run_dir, items, sure, str(run.meta.get("run_id", "")))}
    palette = plotting.Palette.for_variants(_palette_order(run, items))
    heatmap = analysis_charts.scorecard_heatmap(items, model_order(items), run.run_dir / "charts") \
        if items else None
    chart_list = draw_charts(run, agg, cases, sweeps, spectrum_case, palette, items)
    if heatmap is not None:
        chart_list.insert(0, heatmap)
    spectra = spectra_section(run, palette)
    spectra_drawn = [] if spectra is None else \
        [b for b in spectra.blocks if isinstance(b, plotting.Chart)]
    fits = run_fits(run)
    scaling = usl_section(fits, analysis_charts.usl_chart(fits, palette, run.run_dir / "charts"))
    title = f"concbench report: {run.meta.get('scenario', '?')} ({run.meta.get('run_id', '?')})"
    # a run of the classics scenario is read for them: their part comes first
    classics = classics_sections(run.run_dir, palette)
    first, later = (classics, []) if run.meta.get("scenario") == "classics" else ([], classics)
    sections = [
        *first,
        *answer_sections(run, items, sure, _overview(run), heatmap),
        _verdict_section(verdicts, frame, margin, sweeps),
        Section("Charts", [c for c in chart_list if c is not heatmap]),
        *([spectra] if spectra is not None else []),
        *scaling,
        *[s for s in [xray_section(run.run_dir)] if s is not None],
        *[s for s in [resources_section(run.run_dir)] if s is not None],
        *later,
        _environment_section(run),
        *details.hosts_sections(run),
        *details.interpreter_sections(run, margin),
        *details.c10k_sections(run),
        *details.case_sections(agg, cases),
        *details.sweep_sections(sweeps),
        *details.flagged_sections(run),
        details.trials_section(frame),
    ]
    report = Report(run, title, sections, verdicts, chart_list + spectra_drawn, paths, sweeps,
                    agg, items, sure)
    paths["markdown"] = run.run_dir / "report.md"
    paths["markdown"].write_text(to_markdown(report))
    paths["html"] = run.run_dir / "report.html"
    paths["html"].write_text(to_html(report))
    return report


def _palette_order(run: Run, items: list[Workload]) -> list[str]:
    """Colours go to models in the scorecard's order (the best get the clearest colours),
    then to any other variant of the run: one colour per model in every chart."""
    ranked = model_order(items) if items else []
    return list(dict.fromkeys([*ranked, *run.frame["variant"].astype(str)])) \
        if not run.frame.empty else ranked


def write_summary(run: Run) -> Path:
    """summary.csv: one row per trial, identity fields first, every figure as measured, then
    validity: its markers, what is left out and why, and an ok_<metric> column per figure."""
    frame = run.frame
    first = [c for c in [*ID_FIELDS, "variant"] if c in frame]
    last = ["error_kinds", "client_cpu_percent_max", "client_saturated", "has_errors",
            "queues_at", "failed", "excluded", "flags", "exclusion_reason", "invalid_figures",
            *[ok_column(m) for m in JUDGED]]
    middle = [c for c in frame.columns if c not in first and c not in last]
    path = run.run_dir / "summary.csv"
    frame[first + middle + [c for c in last if c in frame]].to_csv(path, index=False)
    return path


def draw_charts(
    run: Run, agg: pd.DataFrame, cases: pd.DataFrame, sweeps: list[SweepResult],
    spectrum_case: str | None, palette: plotting.Palette | None = None,
    items: list[Workload] | None = None,
) -> list[plotting.Chart]:
    """Every chart the run has data for, written to RUN_DIR/charts (old PNGs replaced, but the
    scorecard's heat map, drawn first)."""
    out = run.run_dir / "charts"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        if old.name != analysis_charts.HEATMAP:
            old.unlink()
    if run.frame.empty:
        return []
    palette = palette or plotting.Palette.for_variants(list(dict.fromkeys(run.frame["variant"])))
    drawn = [load_charts.connections_chart(s, agg, cases, palette, out)
             for s in load_charts.CONNECTION_CHARTS]
    drawn.append(_spectrum(run, palette, out, spectrum_case))
    drawn.append(load_charts.mixes_chart(agg, cases, palette, out, run.frame))
    drawn.append(load_charts.c10k_chart(run.frame, palette, out))
    drawn += [load_charts.sweep_chart(s, palette, out, i) for i, s in enumerate(sweeps)]
    return [c for c in drawn if c is not None]


def _spectrum(
    run: Run, palette: plotting.Palette, out: Path, requested: str | None
) -> plotting.Chart | None:
    case, note = pick_spectrum_case(run.frame, requested)
    if case is None:
        return None
    rows = run.frame[(run.frame["case"] == case) & run.frame[ok_column("p99_us")]]
    curves = {}
    for variant, group in rows.groupby("variant", sort=False):
        merged = merged_histogram([run.trials[t] for t in group["trial_id"]])
        if merged is not None:
            curves[variant] = percentile_curve(*merged)
    ordered = {v: curves[v] for v in palette.styles if v in curves}
    return spectrum_charts.spectrum_chart(ordered, case, note, palette, out)


def _overview(run: Run) -> list[str]:
    """The run itself: scenario, status, records against the plan, what is left out, notes."""
    meta, frame = run.meta, run.frame
    planned = len(meta.get("plan") or [])
    lines = [
        f"Scenario {meta.get('scenario', '?')}, run {meta.get('run_id', '?')}: "
        f"status {meta.get('status', 'unknown')}, started {meta.get('started_at', '?')}, "
        f"finished {meta.get('finished_at') or 'not finished'}; "
        f"{len(frame)} trial records" + (f" of {planned} planned" if planned else "") + ".",
    ]
    if planned and len(frame) < planned:
        lines.append(f"The run is incomplete: {planned - len(frame)} planned trial(s) have no "
                     "record (python -m bench run --resume RUN_DIR completes it).")
    lines.append(details.exclusion_sentence(frame))
    busy = busy_machine(meta.get("environment") or {})
    if busy:
        lines.append(busy)
    notes = (meta.get("scenario_spec") or {}).get("notes") or []
    lines += [f"Note: {note}" for note in notes]
    if run.unreadable:
        lines.append("Unreadable trial files (ignored): " + "; ".join(run.unreadable) + ".")
    return lines


def busy_machine(env: dict[str, Any]) -> str:
    """A warning when the load average says other work shared the CPUs, else ''."""
    cpus = env.get("cpu_count") or len(env.get("cpus_usable") or []) or None
    before, after = env.get("load_average_before"), env.get("load_average_after")
    if not cpus or not isinstance(before, list | tuple) or not before:
        return ""
    # only the load before the run speaks of other work: the load after counts the run's own
    # processes and threads (threaded at 1,000 connections alone makes a thousand runnable)
    if before[0] <= 0.5 * cpus:
        return ""
    seen = f"{before[0]:g} before" + (f", {after[0]:g} after" if after else "")
    return (f"Warning: the machine was busy (1-minute load average {seen}, on {cpus} CPUs): "
            "other work shared the CPUs, so the figures are noisy and may be skewed; "
            "compare them with care, or run again on a quiet machine.")


# ---------------------------------------------------------------- scalability


def usl_section(fits: list[UslFit], chart: plotting.Chart | None) -> list[Section]:
    """The USL fits of every closed-loop family measured at several connection counts: the
    reported ones in a table (σ, κ with 95 % intervals, N*, X(N*), R²), the others with why."""
    if not fits:
        return []
    rows = [[f.family, f.variant, str(len(f.levels)), f"{f.lam:,.0f}",
             f"{f.sigma:.4f} [{f.sigma_ci[0]:.4f}, {f.sigma_ci[1]:.4f}]",
             f"{f.kappa:.2e} [{f.kappa_ci[0]:.2e}, {f.kappa_ci[1]:.2e}]",
             "∞" if math.isinf(f.n_star) else f"{f.n_star:,.0f}",
             fmt_rate(f.x_star), f"{f.r2:.3f}"] for f in fits if f.valid]
    blocks: list[Any] = [
        "Gunther's Universal Scalability Law, X(N) = λN / (1 + σ(N−1) + κN(N−1)), fitted per "
        "model to the throughput of every valid trial over the connections axis (scipy "
        "curve_fit, σ in [0, 1], κ ≥ 0; 95 % intervals from the covariance). σ is contention "
        "(the serial share), κ coherency (what makes throughput fall past N* = √((1−σ)/κ)); "
        f"N* is ∞ where κ is 0. A fit is reported only with at least {USL_MIN_LEVELS} "
        "connection levels that have a valid trial. On a loopback benchmark N counts "
        "connections, not CPUs: σ and κ describe the model on this machine and client."]
    if rows:
        blocks.append(Table(["family", "model", "levels", "λ (req/s)", "σ [95 %]",
                             "κ [95 %]", "N*", "X(N*)", "R²"], rows, numeric={2, 3, 6, 7, 8}))
    blocks += [f"Not fitted: {f.variant} ({f.family}): {f.reason}." for f in fits if not f.valid]
    if chart is not None:
        blocks.append(chart)
    return [Section("Scalability (USL)", blocks)]


# ---------------------------------------------------------------- verdicts


def _verdict_section(
    verdicts: list[CaseVerdict], frame: pd.DataFrame, margin: float,
    sweeps: list[SweepResult],
) -> Section:
    flags = _flags_by(frame)
    columns = ["case", "metric", "best", "best value", "× native", "runner-up",
               "runner-up value", "advantage [interval]", "verdict", "native (ceiling)",
               "left out", "basis"]
    rows, used = [], ""
    for v in verdicts:
        best = _with_flags(v.best, flags.get((v.case, v.best), ""))
        runner = _with_flags(v.runner_up, flags.get((v.case, v.runner_up), ""))
        used += flags.get((v.case, v.best), "") + flags.get((v.case, v.runner_up), "")
        floor = "≥ " if v.best_is_floor else ""
        figure = "throughput_rps" if v.figure == "rate_within_slo" else v.figure
        native, bound = _native(v)
        ratio = v.best_value / native if native else float("nan")
        rows.append([
            v.case, v.metric, best, floor + fmt_figure(v.best_value, figure),
            fmt_ratio(ratio, "≤" if bound else ""), runner,
            fmt_figure(v.runner_up_value, figure), _advantage(v), outcome_words(v),
            ("≥ " if bound else "") + fmt_figure(native, figure) + (MARK_SATURATED if bound
                                                                    else ""),
            str(v.excluded), v.basis + (f"; {v.note}" if v.note else ""),
        ])
    table = Table(columns, rows, numeric={3, 4, 6, 7, 9, 10})
    table.footnotes = details.marker_notes(used)
    text = [
        "The best model per case: by median throughput for closed-loop cases, by median p99 "
        "for equal-load cases (every model offered the same rate), by the highest offered "
        "rate whose p99 stayed within the SLO for sweeps; only valid figures count. native is "
        "the reference ceiling and never competes.",
        "Ties: rounds are interleaved, so the best and another model met the same machine in "
        "each round; the best is ahead of it when the exact two-sided Wilcoxon signed-rank "
        "test of their round-paired ratios rejects at the verdict's Holm level (alpha 0.05 "
        "over every verdict of the run: the chance of any false 'clear' in the run is at most "
        f"5 %) and the median ratio reaches the {margin:.0%} minimum effect; otherwise they "
        "tie, because the rounds do not agree (noise) or the effect is under the minimum "
        "(small). The bracket is the range of the round ratios, not a confidence interval. "
        "With fewer than two rounds paired there is no test: 'unconfirmed'.",
        f"Validity is per figure: a trial whose client saturated keeps its server-side "
        "figures; errors leave out throughput and latency, and per-request server figures "
        f"only past {PER_REQUEST_ERROR_LIMIT:.0%} unanswered.",
    ]
    if sweeps:
        slos = "; ".join(f"{s.label}: {s.describe_target()}" for s in sweeps)
        text.append(f"Sweep SLO: {slos}, one for every model (--slo-ms sets another). A "
                    "sweep's rate is the highest offered rate within it, interpolated between "
                    "the last point that met it and the first that missed; a point with "
                    "errors, a saturated client or a failure ends the walk.")
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


def _native(v: CaseVerdict) -> tuple[float, bool]:
    """native's figure in a verdict, and whether it is only a lower bound (its client
    saturated: it was at least that fast)."""
    if not missing(v.native_value):
        return v.native_value, False
    bounds = [x for k, values in v.bounds.items() if is_native(k) for x in values]
    return (float(np.median(bounds)), True) if bounds else (float("nan"), False)


def _with_flags(name: str | None, marks: str) -> str:
    return "—" if name is None else f"{name}{marks}"


def _advantage(v: CaseVerdict) -> str:
    if missing(v.advantage):
        return "—"
    span = f" [{v.interval[0]:.3g}–{v.interval[1]:.3g}]" if v.interval else " [no interval]"
    return f"{v.advantage:.3g}×{span}"


def outcome_words(v: CaseVerdict) -> str:
    """A verdict's outcome in a few words."""
    if v.outcome == "none":
        return "no verdict"
    if v.outcome == "tie":
        return "tie: " + ", ".join([v.best or "", *v.tied])
    if v.outcome == "client-bound":
        return "client-bound: " + ", ".join(v.contenders)
    if v.outcome == "unconfirmed":
        return f"{v.best} ahead, unconfirmed"
    if not v.runner_up:
        return f"{v.best} (alone)"
    return f"{v.best} wins" + (" (small)" if v.small_effect else "")


# ---------------------------------------------------------------- environment


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


# ---------------------------------------------------------------- output


def to_markdown(report: Report) -> str:
    """report.md: the same content as the HTML, charts referenced relatively."""
    return markdown_document(report.title, report.sections, report.run.run_dir)


def to_html(report: Report) -> str:
    """report.html: self-contained (inline CSS, images as data URIs, no external reference)."""
    return html_document(report.title, report.sections)


def print_summary(report: Report, console: Console) -> None:
    """The terminal summary: the scorecard, how sure, warnings, files, one line per workload
    and, last, the path of report.html."""
    if not report.workloads:
        console.print("Summary: no workload has a valid figure yet.", highlight=False)
    warnings = [f"{v.case}: {v.note}" for v in report.verdicts if v.note]
    warnings.append(details.exclusion_sentence(report.run.frame))
    busy = busy_machine(report.run.meta.get("environment") or {})
    if busy:
        warnings.append(busy)
    sure = report.assurance or assurance(report.run)
    print_answer(console, report.workloads, sure, report.paths, warnings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` verb's options."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--spectrum-case", metavar="CASE",
                        help="case of the latency spectrum chart (default: echo at 128 conns)")
    parser.add_argument("--slo-ms", type=positive, metavar="MS",
                        help="p99 SLO for sweeps, the same for every model (default: the "
                             "scenario's slo_p99_ms)")
    parser.add_argument("--margin", type=non_negative, default=DEFAULT_MARGIN,
                        help="minimum effect worth naming, relative (default %(default)s); "
                             "ties are decided by the paired signed-rank test")


def render(run_dir: Path, console: Console, *, spectrum_case: str | None = None,
           slo_ms: float | None = None, margin: float = DEFAULT_MARGIN) -> int:
    """Render RUN_DIR's report and print its summary: 0, or 2 on an unusable folder."""
    try:
        report = build_report(run_dir, spectrum_case=spectrum_case, slo_ms=slo_ms,
                              margin=margin)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    print_summary(report, console)
    return 0


def run(options: argparse.Namespace) -> int:
    """``python -m bench report RUN_DIR``: render it again and print the summary."""
    console = Console(width=None if sys.stdout.isatty() else 100)
    return render(options.run_dir, console, spectrum_case=options.spectrum_case,
                  slo_ms=options.slo_ms, margin=options.margin)
