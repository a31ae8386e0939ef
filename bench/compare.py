"""``python -m bench compare RUN_A RUN_B``: how run B's models did against run A's, per case.

Two machines, two interpreters, two days: for each case (workload) and model present in both
runs, and for each figure below, the ratio of B's median to A's, the range of the ratios paired
by repetition (not a confidence interval: with a handful of repetitions none can be stated),
and the two-sided exact signed-rank p-value of those log ratios (``bench.analysis.significance``,
the test the report's verdicts use), Holm-adjusted over every comparison printed. Under the
null of no difference between the runs any pairing of their repetitions is a valid one. Only
figures the validity rules keep are compared (``bench.analysis.frames.valid_figures``): a
saturated client's throughput is not a figure.

Markdown for a pull-request comment by default, ``--json`` for scripts. Runs whose scenarios
differ (another scenario, or a case with other settings) are refused, naming the difference:
their ratios would compare different loads. Different models, interpreters or repetitions are
what a comparison is for and are allowed; models in only one run are listed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import metrics
from bench.analysis import intervals, significance
from bench.analysis.frames import ReportError, Run, load_run, valid_figures

# figure -> which way is better
FIGURES: dict[str, str] = {"throughput_rps": "higher", "p99_us": "lower",
                           "cpu_us_per_request": "lower"}
# a case's settings that may differ between runs without changing its load
CASE_KEYS_IGNORED = frozenset({"servers", "skip_servers", "workers"})


class CompareError(Exception):
    """Two runs that cannot be compared, with the reason in one line."""


@dataclass
class Comparison:
    """One case, model and figure: B's median over A's, with its interval and significance."""

    case: str
    model: str
    figure: str
    better: str
    a: list[float]
    b: list[float]
    ratio: float
    interval: tuple[float, float] | None
    pairs: int
    p: float
    p_holm: float = math.nan
    verdict: str = ""


@dataclass
class Result:
    """Everything ``compare`` found, in the order it prints."""

    a: dict[str, Any]
    b: dict[str, Any]
    comparisons: list[Comparison]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    alpha: float = significance.ALPHA


# ---------------------------------------------------------------- the scenarios must match


def _cases(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    spec = meta.get("scenario_spec") or {}
    return {str(case["name"]): {k: v for k, v in case.items() if k not in CASE_KEYS_IGNORED}
            for case in spec.get("cases") or []}


def scenario_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """What makes two runs' scenarios differ, in words; None when they are the same load."""
    if a.get("scenario") != b.get("scenario"):
        return f"scenario {a.get('scenario')!r} against {b.get('scenario')!r}"
    cases_a, cases_b = _cases(a), _cases(b)
    if set(cases_a) != set(cases_b):
        only_a, only_b = sorted(set(cases_a) - set(cases_b)), sorted(set(cases_b) - set(cases_a))
        parts = [f"cases only in A: {', '.join(only_a)}" if only_a else "",
                 f"cases only in B: {', '.join(only_b)}" if only_b else ""]
        return "; ".join(filter(None, parts))
    for name, case in cases_a.items():
        other = cases_b[name]
        for key in sorted(set(case) | set(other)):
            if case.get(key) != other.get(key):
                return f"case {name}: {key} {case.get(key)!r} against {other.get(key)!r}"
    return None


# ---------------------------------------------------------------- the statistics


def _by_repetition(rows: pd.DataFrame, figure: str) -> dict[int, float]:
    """repetition -> the valid figure of that repetition's trial (NaN left out)."""
    return {int(r): float(v) for r, v in zip(rows["repeat"], rows[figure], strict=True)
            if v == v}


def compare_figure(case: str, model: str, figure: str, rows_a: pd.DataFrame,
                   rows_b: pd.DataFrame) -> Comparison:
    """B over A for one figure; log ratios paired by repetition number for the rank test."""
    a, b = _by_repetition(rows_a, figure), _by_repetition(rows_b, figure)
    values_a, values_b = [a[r] for r in sorted(a)], [b[r] for r in sorted(b)]
    both = sorted(set(a) & set(b))
    differences = significance.paired_log_ratios([b[r] for r in both], [a[r] for r in both])
    p = significance.signed_rank_p(differences) if differences else math.nan
    return Comparison(case, model, figure, FIGURES[figure], values_a, values_b,
                      intervals.ratio_of_medians(values_b, values_a),
                      _pair_range(differences), len(differences), p)


def _pair_range(log_ratios: list[float]) -> tuple[float, float] | None:
    """The smallest and largest paired ratio B/A (None without pairs)."""
    if not log_ratios:
        return None
    return math.exp(min(log_ratios)), math.exp(max(log_ratios))


def _verdict(item: Comparison, alpha: float) -> str:
    """'better', 'worse' (B against A, the figure's own direction), or why neither."""
    if item.ratio != item.ratio:
        return "no figure"
    if item.p_holm != item.p_holm:
        return "no pairs"
    if item.p_holm >= alpha:
        return "no clear difference"
    up = item.ratio > 1.0
    return "better" if up == (item.better == "higher") else "worse"


def _run_facts(run: Run) -> dict[str, Any]:
    """What the header says about a run: where, which scenario, when, on what."""
    environment = run.meta.get("environment") or {}
    versions = sorted({str(v) for v in run.frame.get("interpreter_version", []) if v == v})
    return {"path": str(run.run_dir), "run_id": run.meta.get("run_id"),
            "scenario": run.meta.get("scenario"), "started_at": run.meta.get("started_at"),
            "host": environment.get("hostname"), "python": versions,
            "placement": (environment.get("placement") or {}).get("name"),
            "load_average_before": (environment.get("load_average_before") or [None])[0],
            "trials": len(run.trials)}


def compare_runs(run_a: Run, run_b: Run, alpha: float = significance.ALPHA) -> Result:
    """Every case, model and figure both runs hold. CompareError when the scenarios differ."""
    difference = scenario_difference(run_a.meta, run_b.meta)
    if difference:
        raise CompareError(f"the runs' scenarios differ: {difference}")
    frame_a, frame_b = valid_figures(run_a.frame), valid_figures(run_b.frame)
    if frame_a.empty or frame_b.empty:
        empty = run_a.run_dir if frame_a.empty else run_b.run_dir
        raise CompareError(f"{empty}: no trial records to compare")
    models_a = list(dict.fromkeys(frame_a["variant"]))
    models_b = list(dict.fromkeys(frame_b["variant"]))
    comparisons = []
    for case in dict.fromkeys(frame_a["case"]):
        for model in (m for m in models_a if m in models_b):
            rows_a = frame_a[(frame_a["case"] == case) & (frame_a["variant"] == model)]
            rows_b = frame_b[(frame_b["case"] == case) & (frame_b["variant"] == model)]
            if rows_a.empty or rows_b.empty:
                continue
            comparisons += [compare_figure(str(case), str(model), figure, rows_a, rows_b)
                            for figure in FIGURES if figure in rows_a and figure in rows_b]
    for item, adjusted in zip(comparisons, significance.holm([c.p for c in comparisons]),
                              strict=True):
        item.p_holm = adjusted
        item.verdict = _verdict(item, alpha)
    return Result(_run_facts(run_a), _run_facts(run_b), comparisons,
                  [m for m in models_a if m not in models_b],
                  [m for m in models_b if m not in models_a], alpha)


# ---------------------------------------------------------------- Markdown and JSON


def _number(value: float) -> str:
    if value != value:
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ratio(item: Comparison) -> str:
    if item.ratio != item.ratio:
        return "–"
    span = ("" if item.interval is None
            else f" [{_number(item.interval[0])}, {_number(item.interval[1])}]")
    return f"{_number(item.ratio)}{span}"


def _p(value: float) -> str:
    return "–" if value != value else f"{value:.3g}"


def _header(label: str, facts: Mapping[str, Any]) -> str:
    """A run in one line: what makes its figures differ from the other's besides the code."""
    python = ", ".join(facts["python"]) or "?"
    load = facts.get("load_average_before")
    busy = f", load average {load:g} before" if isinstance(load, int | float) else ""
    return (f"- **{label}**: `{facts['path']}` ({facts['scenario']}, {facts['started_at']}, "
            f"host {facts['host'] or '?'}, Python {python}, placement "
            f"{facts.get('placement') or '?'}{busy}, {facts['trials']} trials)")


def pairs_needed(comparisons: int, alpha: float) -> int:
    """The fewest pairs whose smallest signed-rank p, Holm-adjusted over ``comparisons``
    (the smallest p is multiplied by their count), falls below ``alpha``."""
    pairs = 1
    while comparisons * significance.smallest_p(pairs) >= alpha:
        pairs += 1
    return pairs


def _power_note(result: Result) -> list[str]:
    """A warning when too few repetitions are paired for any difference to be named."""
    tested = [c for c in result.comparisons if c.p == c.p]
    if not tested:
        return []
    most = max(c.pairs for c in tested)
    needed = pairs_needed(len(tested), result.alpha)
    if most >= needed:
        return []
    return [f"With at most {most} paired repetitions no difference can be named here: the "
            f"smallest p of {most} pairs is {significance.smallest_p(most):.3g}, and Holm "
            f"multiplies it by {len(tested)}. Runs with --repeat {needed} or more (or with "
            "fewer models, --servers) can name one.", ""]


def markdown(result: Result) -> str:
    """The comparison as Markdown: a header, then a table per case."""
    tested = sum(c.p == c.p for c in result.comparisons)  # Holm counts these (NaN: no pairs)
    lines = ["## concbench compare: B against A", "",
             _header("A", result.a), _header("B", result.b), "",
             f"B/A is B's median over A's with the range of its paired ratios; p is the exact "
             f"signed-rank test of the log ratios paired by repetition, Holm-adjusted over the "
             f"{tested} tested comparisons below; a difference is named at "
             f"p < {result.alpha:g}. Medians of the trials the validity rules keep.", ""]
    lines += _power_note(result)
    for case in dict.fromkeys(item.case for item in result.comparisons):
        lines += [f"### {case}", "",
                  "| model | figure | A median | B median | B/A [pairs' range] | p (Holm) "
                  "| B against A |", "|---|---|--:|--:|--:|--:|---|"]
        for item in (c for c in result.comparisons if c.case == case):
            lines.append(
                f"| {item.model} | {metrics.words(item.figure)} "
                f"| {_number(intervals.median(item.a))} | {_number(intervals.median(item.b))} "
                f"| {_ratio(item)} | {_p(item.p_holm)} | {item.verdict} |")
        lines.append("")
    for label, models in (("A", result.only_in_a), ("B", result.only_in_b)):
        if models:
            lines.append(f"Only in {label}: {', '.join(models)}.")
    return "\n".join(lines).rstrip() + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: null for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def as_json(result: Result) -> dict[str, Any]:
    """The comparison as one JSON document (NaN and infinity as null)."""
    items = []
    for item in result.comparisons:
        record = {key: _finite(value) for key, value in asdict(item).items()}
        record["a_median"] = _finite(intervals.median(item.a))
        record["b_median"] = _finite(intervals.median(item.b))
        items.append(record)
    return {"format": 1, "a": result.a, "b": result.b, "alpha": result.alpha,
            "test": "exact signed-rank on log ratios paired by repetition, Holm-adjusted",
            "interval": "the range of the ratios paired by repetition (not a confidence "
                        "interval)",
            "comparisons": items, "only_in_a": result.only_in_a, "only_in_b": result.only_in_b}


# ---------------------------------------------------------------- the verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the run compared against")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the run compared with it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--alpha", type=_alpha, default=significance.ALPHA,
                        help=f"significance level (default {significance.ALPHA:g})")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def run(options: argparse.Namespace, out: Any = None) -> int:
    """Print the comparison; refuse (exit 2, one line on stderr) what cannot be compared."""
    out = out or sys.stdout
    try:
        result = compare_runs(_load(options.run_a), _load(options.run_b), options.alpha)
    except CompareError as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    if options.json:
        json.dump(as_json(result), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(markdown(result))
    return 0


def _load(path: Path) -> Run:
    try:
        return load_run(path)
    except ReportError as error:
        raise CompareError(str(error)) from None
