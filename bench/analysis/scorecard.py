"""The answer: workloads, a scorecard of models against them, one sentence each, how sure.

A workload is a question a user brings ("small requests", "many connections", "a CPU-heavy
handler", "slow downstream I/O", "latency at equal load", "memory per connection"), read from
one case of the run and one figure. Cases are mapped to workloads from what they are (their
group, mix, mode and connections), never from their names, so a scenario of one's own gets its
own columns; a churn, slowloris or head-of-line case (requests per connection, slow connections
held, a mix with a reference case) is judged by its own figure (CPU per connection, the measured
connections' p99, the cheap requests' p99), not its throughput. Each scorecard cell is a
model's figure relative to the column's leader, with the bootstrap interval of that ratio; each
sentence names the best model(s) and the measured reason the others lose, all computed from
the run.

Here the workloads are found and their cells filled (``workloads``); a case's words are
questions.py's, a column is workload.py's, its sentence sentences.py's, and how sure the
whole answer is assurance.py's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import intervals, memory, validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, is_native, valid_figures
from bench.analysis.questions import (
    CHURN,
    HOL,
    SLOWLORIS,
    SPECIAL,
    case_words,
    cheap_requests,
    plural,
    requests_words,
    special_words,
    workload_kind,
)
from bench.analysis.sentences import sentence
from bench.analysis.sweeps import SweepResult
from bench.analysis.verdicts import (
    DEFAULT_MARGIN,
    CaseVerdict,
    figure_verdict,
    settle,
    verdict_of,
)
from bench.analysis.workload import Cell, Workload


def workloads(run: Run, verdicts: list[CaseVerdict], sweeps: list[SweepResult],
              margin: float = DEFAULT_MARGIN) -> list[Workload]:
    """Every workload the run answers, in the scenario's order, with cells and sentences."""
    frame = run.frame
    if frame.empty:
        return []
    cases = case_table(frame).set_index("case")
    by_case = {v.case: v for v in verdicts}
    out: list[Workload] = []
    for verdict in verdicts:
        special = _special(cases, verdict)
        if special is not None:
            out.append(_special_workload(run, cases, verdict.case, special, margin))
        elif verdict.figure == "rate_within_slo":
            sweep = next(s for s in sweeps if s.label == verdict.case)
            row = cases.loc[cases["series_label"] == sweep.label].iloc[0]
            out.append(Workload(f"load within the latency SLO ({case_words(row)})",
                                verdict.case, verdict.figure, "higher", "sweep", verdict,
                                notes=dict(sweep.stopped)))
        elif verdict.figure == "p99_us":
            row = cases.loc[verdict.case]
            rate = _case_rate(frame, verdict.case)
            out.append(Workload(f"latency at equal load ({rate:,.0f} req/s, {case_words(row)})",
                                verdict.case, "p99_us", "lower", "latency", verdict))
        else:
            out.append(Workload(case_words(cases.loc[verdict.case]), verdict.case,
                                verdict.figure, "higher", "throughput", verdict))
    out += _extra_workloads(run, cases, by_case, margin)
    settle([w.verdict for w in out])  # Holm over every verdict the run shows
    _unique_names(out)
    for workload in out:
        workload.label = short_label(workload, cases, frame)
    masked = valid_figures(frame)
    for workload in out:
        workload.cells = _cells(workload, frame)
        workload.native_upper_bound = _native_bounded(workload)
        workload.sentence = sentence(workload, masked[masked["case"] == workload.case],
                                     frame[frame["case"] == workload.case])
    return out


def _special(cases: pd.DataFrame, verdict: CaseVerdict) -> str | None:
    """The workload kind of a closed-loop case's throughput verdict (None: an ordinary one)."""
    if verdict.figure != "throughput_rps" or verdict.case not in cases.index:
        return None
    return workload_kind(cases.loc[verdict.case])


def _special_workload(run: Run, cases: pd.DataFrame, case: str, kind: str,
                      margin: float) -> Workload:
    """Churn, slowloris or head-of-line: the case's own figure in place of its throughput."""
    figure, _name = SPECIAL[kind]
    row = cases.loc[case]
    return Workload(special_words(kind, row), case, figure, "lower", kind,
                    figure_verdict(run, case, figure, "lower", margin),
                    cheap=cheap_requests(row, cases) if kind == HOL else "")


SHORT_OPS = {"small requests": "echo", "CPU-heavy handler": "CPU", "slow downstream I/O": "I/O"}
SHORT_KIND = {"cpu": "CPU/req", "memory": "RSS/conn", "sweep": "SLO rate",
              CHURN: "CPU/conn", SLOWLORIS: "slow p99", HOL: "HoL p99"}


def short_label(workload: Workload, cases: pd.DataFrame, frame: pd.DataFrame) -> str:
    """'echo c16', 'CPU c16', 'I/O c128', 'p99 @4k', 'CPU/req', 'RSS/conn', 'SLO rate'."""
    if workload.kind in SHORT_KIND:
        text = SHORT_KIND[workload.kind]
    elif workload.kind == "latency":
        rate = _case_rate(frame, workload.case)
        text = f"p99 @{rate / 1000:.3g}k" if rate == rate else "p99"
    else:
        row = cases.loc[workload.case] if workload.case in cases.index else None
        words = requests_words(row["mix"]) if row is not None else ""
        op = next((v for k, v in SHORT_OPS.items() if words.startswith(k)), "mix")
        text = f"{op} c{int(row['connections'])}" if row is not None else workload.case
    if cases.loc[cases.index == workload.case, "group"].eq(C10K_GROUP).any():
        text = f"C10K {text}"
    return text


def _case_rate(frame: pd.DataFrame, case: str) -> float:
    rates = pd.to_numeric(frame.loc[frame["case"] == case, "rate"], errors="coerce").dropna()
    return float(rates.median()) if not rates.empty else math.nan


def _extra_workloads(run: Run, cases: pd.DataFrame, by_case: dict[str, CaseVerdict],
                     margin: float) -> list[Workload]:
    """CPU per request (at equal load where the run has it, else on small requests), memory
    per connection (the closed-loop case with the most connections), and C10K's latency and
    memory per connection held."""
    extra = []
    equal = [c for c, v in by_case.items() if v.figure == "p99_us"]
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    closed = closed[[workload_kind(r) is None for _, r in closed.iterrows()]]
    small = [c for c, r in closed.iterrows()
             if requests_words(r["mix"]) == "small requests" and r["connections"] > 1]
    cpu_case = equal[0] if equal else small[0] if small else None
    if cpu_case is not None:
        verdict = figure_verdict(run, cpu_case, "cpu_us_per_request", "lower", margin)
        where = "at equal load" if equal else _compact(cases.loc[cpu_case])
        extra.append(Workload(f"CPU per request ({where})", cpu_case, "cpu_us_per_request",
                              "lower", "cpu", verdict))
    if not closed.empty:
        widest = closed.sort_values("connections", ascending=False, kind="stable").index[0]
        extra.append(_memory_workload(run, str(widest), list(closed.index), cases, margin))
    for case, row in cases[cases["group"] == C10K_GROUP].iterrows():
        name = case_words(row)
        extra.append(Workload(f"{name}: busy p99", str(case), "p99_us", "lower", "latency",
                              figure_verdict(run, str(case), "p99_us", "lower", margin)))
        extra.append(Workload(f"{name}: memory per connection held", str(case),
                              "rss_per_held_connection_bytes", "lower", "memory",
                              figure_verdict(run, str(case), "rss_per_held_connection_bytes",
                                             "lower", margin)))
    return extra


def _memory_workload(run: Run, widest: str, plain: list[str], cases: pd.DataFrame,
                     margin: float) -> Workload:
    """Memory per connection: the slope of RSS over connections held (bench/analysis/memory.py)
    across the plain closed-loop cases of the widest case's mix."""
    fitted = [c for c in memory.slope_cases(run.frame, widest) if c in plain]
    found = memory.slopes(run.frame, fitted)
    samples = {k: [v[r] for r in sorted(v)] for k, v in found.paired.items()}
    rows = run.frame[run.frame["case"] == widest]
    verdict = verdict_of(widest, str(rows["group"].iloc[0]) if not rows.empty else "",
                       "median RSS slope per connection held (bytes)", memory.FIGURE, "lower",
                       samples, margin, 0, paired=found.paired)
    counts = ", ".join(f"{int(cases.loc[c, 'connections']):,}" for c in fitted)
    if not found.paired:
        verdict.basis = (f"a slope of RSS over connections held needs valid trials at "
                         f"{memory.MIN_COUNTS} or more connection counts of one request mix "
                         f"(this run: {counts or 'none'})")
    if found.resolution:
        worst = max(found.resolution.values())
        verdict.note = "; ".join(filter(None, [verdict.note, (
            f"slope of RSS over connections held at {counts} connections; resolution "
            f"{worst:,.0f} bytes (a {memory.PAGE_BYTES:,}-byte page over the span held)")]))
    return Workload(f"memory per connection ({_compact(cases.loc[widest])})", widest,
                    memory.FIGURE, "lower", "memory", verdict)


def _compact(row: Any) -> str:
    """'1,000 connections, small requests': a case for inside another name's parentheses."""
    return f"{plural(int(row['connections']), 'connection')}, {requests_words(row['mix'])}"


def _unique_names(items: list[Workload]) -> None:
    seen: dict[str, int] = {}
    for item in items:
        seen[item.name] = seen.get(item.name, 0) + 1
    for item in items:
        if seen[item.name] > 1:
            item.name = f"{item.name} [{item.case}]"


def _cells(workload: Workload, frame: pd.DataFrame) -> dict[str, Cell]:
    """Every model of the case: its figure relative to the leader's, or why it has none."""
    verdict = workload.verdict
    leader = verdict.samples.get(verdict.best or "", [])
    rows = frame[frame["case"] == workload.case] if workload.kind != "sweep" else \
        frame[frame["variant"].isin(list(verdict.samples))]
    variants = list(dict.fromkeys([*verdict.samples, *rows["variant"].astype(str)]))
    cells = {}
    for variant in variants:
        mine = verdict.samples.get(variant) or []
        if workload.kind == "sweep" and intervals.median(mine) <= 0:
            cells[variant] = Cell(0.0, 0.0, None, math.nan, "missing",
                                  workload.notes.get(variant, "missed the SLO at once"))
            continue
        if not mine:
            cells[variant] = _missing_cell(workload, variant, rows)
            continue
        cells[variant] = _cell(workload, variant, mine, leader)
    return cells


def _cell(workload: Workload, variant: str, mine: list[float], leader: list[float]) -> Cell:
    verdict = workload.verdict
    value = intervals.median(mine)
    top = intervals.median(leader)
    relative = value / top if top else math.nan
    badness = relative if workload.better == "lower" else (1 / relative if relative else math.inf)
    if is_native(variant):
        status = "reference"
    elif variant == verdict.best:
        status = "best"
    elif verdict.tie_reasons.get(variant) == "rounds" or variant in verdict.untested:
        status = "untested"  # too few valid rounds paired to tell, either way
    elif variant in verdict.tied:
        status = "tie"
    else:
        status = "worse"
    return Cell(value, relative, _round_range(verdict, variant, workload.better),
                max(1.0, badness) if badness == badness else math.nan, status, n=len(mine))


def _round_range(verdict: CaseVerdict, variant: str, better: str) -> tuple[float, float] | None:
    """The range of ``variant``'s round ratios to the leader (its figure ÷ the leader's, round
    by round), from the verdict's paired test; None without one."""
    test = verdict.tests.get(variant)
    if test is None or test.span is None:
        return None
    low, high = test.span  # the leader's advantage, >= 1 when ahead
    if better == "higher":
        return (1 / high if high else math.inf, 1 / low if low else math.inf)
    return (low, high)


def _missing_cell(workload: Workload, variant: str, rows: pd.DataFrame) -> Cell:
    """No valid figure: a lower bound (client saturated), or the validity's reason."""
    verdict = workload.verdict
    bound = verdict.bounds.get(variant) or []
    top = intervals.median(verdict.samples.get(verdict.best or "", []))
    if bound:
        value = intervals.median(bound)
        relative = value / top if top else math.nan
        return Cell(value, relative, None, math.nan, "bound",
                    "client saturated: at least this fast", n=len(bound))
    mine = rows[rows["variant"] == variant]
    if workload.kind == "sweep":
        return Cell(math.nan, math.nan, None, math.nan, "missing", "no valid sweep point")
    column = validity.ok_column(workload.figure)
    reasons = [str(r) for r in mine["exclusion_reason"] if r] if column in mine else []
    why = _reason_for(workload.figure, mine) or (reasons[0] if reasons else "not measured")
    return Cell(math.nan, math.nan, None, math.nan, "missing", why)


def _reason_for(figure: str, rows: pd.DataFrame) -> str:
    """The validity's reason that this figure is left out in the first of these trials."""
    for reason in rows["exclusion_reason"].astype(str):
        for part in reason.split(validity.REASONS_JOIN):
            names, _, why = part.partition(": ")
            if _mentions(names, figure):
                return why
    return ""


def _mentions(names: str, figure: str) -> bool:
    if figure in names:
        return True
    if "throughput and latency" in names:
        return figure in validity.CLIENT_SIDE
    return "latency" in names.split(", ") and figure in validity.LATENCY


def _native_bounded(workload: Workload) -> bool:
    return any(is_native(m) and c.status == "bound" for m, c in workload.cells.items())


def model_order(items: list[Workload]) -> list[str]:
    """Scorecard rows: competing models by the geometric mean of their badness over the
    columns where they have a figure (fewer columns count against none), then models with no
    figure, native last."""
    badness: dict[str, list[float]] = {}
    for workload in items:
        for model, cell in workload.cells.items():
            badness.setdefault(model, [])
            if cell.badness == cell.badness and not is_native(model):
                badness[model].append(math.log(cell.badness))
    scored = sorted((float(np.mean(v)) if v else math.inf, m) for m, v in badness.items()
                    if not is_native(m))
    return [m for _, m in scored] + [m for m in badness if is_native(m)]
