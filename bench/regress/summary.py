"""The regression gate's verdict written out: a markdown table (the terminal, and the CI step
summary) and the JSON record under results/regress/."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.regress import cost_stage
from bench.regress import stats as rs
from bench.regress.verdict import GateVerdict, ModelResult
from bench.store import RESULTS_ROOT, atomic_write_json


def _metric_cell(metric: rs.MetricComparison | None) -> str:
    """``+25.1% [+20.3%, +31.0%] p=0.001 (limit 15%)``, bold when flagged."""
    if metric is None:
        return "n/a"
    change = f"**{metric.slowdown:+.1%}**" if metric.flagged else f"{metric.slowdown:+.1%}"
    return (f"{change} [{metric.ci_low - 1:+.1%}, {metric.ci_high - 1:+.1%}] "
            f"p={metric.p_value:.2g} (limit {metric.threshold:.0%})")


def markdown(verdict: GateVerdict) -> str:
    """The verdict as a Markdown section (for stdout and $GITHUB_STEP_SUMMARY)."""
    s = verdict.settings
    dirty = ", with uncommitted changes" if verdict.head_dirty else ""
    lines = [f"### Performance regression check: {verdict.verdict.upper()}", "",
             f"base `{s.base}` ({(verdict.base_sha or '?')[:10]}) vs head "
             f"({(verdict.head_sha or '?')[:10]}{dirty}).", ""]
    if verdict.error:
        lines += [f"**The check could not run:** {verdict.error}", ""]
    lines += _reach_lines(verdict)
    if verdict.cost_results:
        lines += _cost_lines(verdict)
    if verdict.results:
        lines += [f"**Timing** (profile `{s.profile.name}`: {s.profile.samples} samples per "
                  f"side of {s.profile.duration_s:g} s (+{s.profile.warmup_s:g} s warm-up), "
                  f"A B B A). A regression is a slowdown past the limit ({s.threshold:.0%}, or "
                  f"3x the same-code noise), with p < {s.alpha:g}, in two passes; it fails the "
                  f"check only if that limit is at most {s.timing_fail_limit:.0%}.", ""]
        lines += ["| model | case | base req/s | head req/s | time per request: change "
                  "[95% CI] | server CPU per request: change [95% CI] | verdict |",
                  "|---|---|---:|---:|---|---|---|"]
        for result in verdict.results:
            lines += _rows(result)
        lines.append("")
    if s.accepted:
        lines.append(f"Accepted slowdowns (perf-accept): {', '.join(sorted(s.accepted))}.")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in verdict.stage_wall_s.items())
    lines.append(f"Wall time {verdict.wall_s:.0f} s ({stages or 'no stage ran'}); "
                 f"exit status {verdict.exit_status}.")
    return "\n".join(lines) + "\n"


def _reach_lines(verdict: GateVerdict) -> list[str]:
    if verdict.settings.models or verdict.settings.reach == "all":
        return []
    if not verdict.reached:
        return [f"The change ({len(verdict.changed_files)} files) reaches no model's code.", ""]
    reached = ", ".join(f"{m} (`{f}`)" for m, f in verdict.reached.items())
    return [f"The change reaches: {reached}.", ""]


def _number(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def _cost_cells(pair: dict[str, float | None], digits: int) -> str:
    change = pair.get("change_pct")
    text = f"{_number(pair.get('base'), digits)} → {_number(pair.get('head'), digits)}"
    return text + (f" ({change:+.2f}%)" if change is not None else "")


def _cost_lines(verdict: GateVerdict) -> list[str]:
    s = verdict.settings
    lines = [f"**Cost** (deterministic: callgrind and strace, one request in flight; cases "
             f"{', '.join(s.cost_cases)}). A regression is instructions per request up by more "
             f"than {s.cost_threshold_pct:g} %, or (at one connection) any system call up by "
             f"more than {cost_stage.SYSCALL_TOLERANCE:g} per request, in two runs.", "",
             "| model | case | instructions per request | system calls per request | "
             "verdict |", "|---|---|---:|---:|---|"]
    for r in verdict.cost_results:
        status = f"**{r.status}**" + (f": {r.note}" if r.note else "")
        if not r.instructions_per_request:
            lines.append(f"| {r.model} | {r.case} | | | {status} |")
            continue
        lines.append(f"| {r.model} | {r.case} | {_cost_cells(r.instructions_per_request, 0)} | "
                     f"{_cost_cells(r.syscalls_per_request, 2)} | {status} |")
    return [*lines, ""]


def _rows(result: ModelResult) -> list[str]:
    """One table row per pass; the verdict on the last."""
    verdict = f"**{result.status}**" + (f": {result.note}" if result.note else "")
    measured = [p for p in result.passes if p.metrics]
    if not measured:
        return [f"| {result.model} | {result.case} | | | | | {verdict} |"]
    rows = []
    for number, one in enumerate(measured):
        rate = one.time_per_request
        base_rps = f"{1.0 / rate.base_median:,.0f}" if rate else ""
        head_rps = f"{1.0 / rate.head_median:,.0f}" if rate else ""
        name = result.model if number == 0 else f"{result.model} (rerun)"
        last = number == len(measured) - 1
        rows.append(f"| {name} | {result.case} | {base_rps} | {head_rps} | "
                    f"{_metric_cell(rate)} | {_metric_cell(one.cpu_per_request)} | "
                    f"{verdict if last else 'flagged: rerun'} |")
    return rows


def emit(text: str) -> None:
    """Print Markdown; append it to $GITHUB_STEP_SUMMARY when set (the CI step's summary)."""
    sys.stdout.write(text)
    sys.stdout.flush()
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def write_outputs(verdict: GateVerdict, text: str) -> Path:
    """Print the table, append it to $GITHUB_STEP_SUMMARY, write the JSON verdict."""
    emit(text)
    path = verdict.settings.json_path or default_json_path()
    atomic_write_json(path, verdict.as_dict(), indent=2)
    return path


def default_json_path() -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return RESULTS_ROOT / "regress" / f"{stamp}.json"
