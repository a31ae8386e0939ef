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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import metrics
from bench.analysis import intervals, memory, validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, is_native, valid_figures
from bench.analysis.sweeps import SweepResult
from bench.analysis.verdicts import (
    DEFAULT_MARGIN,
    MIN_PAIRS,
    CaseVerdict,
    figure_verdict,
    settle,
    verdict_of,
)
from clients.mix import MixError, parse_mix

MANY_CONNECTIONS = 500  # echo at this many connections or more is "many connections"
SMALL_PAYLOAD = 1024  # bytes: an echo this size or smaller is a "small request"


# ---------------------------------------------------------------- what a case asks


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def requests_words(mix: str) -> str:
    """What a mix's requests are, in words: 'small requests', 'CPU-heavy handler (WORK 2,000)'."""
    try:
        entries = parse_mix(str(mix))
    except MixError:
        return f"requests {mix}"
    ops = {e.op for e in entries}
    if ops == {"echo"}:
        size = max(e.arg for e in entries)
        return "small requests" if size <= SMALL_PAYLOAD else f"{size:,}-byte requests"
    if ops == {"work"}:
        return f"CPU-heavy handler (WORK {max(e.arg for e in entries):,})"
    if ops == {"sleep"}:
        return f"slow downstream I/O ({max(e.arg for e in entries) / 1000:g} ms)"
    return f"mixed requests ({mix})"


def _count_of(row: Any, name: str) -> int:
    """A whole-number field of a case row (0 when absent or NaN)."""
    try:
        value = float(getattr(row, name, 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(value) if value == value else 0


def case_words(row: Any) -> str:
    """A case as a workload name, from its fields: group, mix, connections, pipeline."""
    connections, idle = _count_of(row, "connections"), _count_of(row, "idle_connections")
    what = requests_words(row.mix)
    pipeline = _count_of(row, "pipeline")
    extra = f", pipeline {pipeline}" if pipeline > 1 else ""
    if str(row.group) == C10K_GROUP:
        return f"C10K ({connections + idle:,} connections, {connections:,} busy)"
    if what == "small requests" and connections >= MANY_CONNECTIONS:
        return f"many connections ({connections:,}, small requests{extra})"
    return f"{what}, {_plural(connections, 'connection')}{extra}"


CHURN, SLOWLORIS, HOL = "churn", "slowloris", "hol"
# a workload case's figure, which way is better, and its name
SPECIAL = {CHURN: ("cpu_us_per_connection", "connection churn"),
           SLOWLORIS: ("p99_us", "slow clients holding connections"),
           HOL: ("reference_kind_p99_us", "head-of-line blocking")}


def workload_kind(row: Any) -> str | None:
    """'churn' (requests per connection), 'slowloris' (slow connections held) or 'hol' (a
    mix of several kinds with a reference case), from a case's fields; None otherwise."""
    if _count_of(row, "requests_per_connection") > 0:
        return CHURN
    if _count_of(row, "slowloris_connections") > 0:
        return SLOWLORIS
    reference = getattr(row, "reference_case", None)
    if isinstance(reference, str) and reference and len(_entries(row.mix)) > 1:
        return HOL
    return None


def _entries(mix: Any) -> list[Any]:
    try:
        return list(parse_mix(str(mix)))
    except MixError:
        return []


def special_words(kind: str, row: Any) -> str:
    """A workload case's name: 'connection churn (1 request per connection, 16 connections)'."""
    connections = _plural(_count_of(row, "connections"), "connection")
    if kind == CHURN:
        per = _plural(_count_of(row, "requests_per_connection"), "request")
        return f"{SPECIAL[kind][1]} ({per} per connection, {connections})"
    if kind == SLOWLORIS:
        held = _count_of(row, "slowloris_connections")
        return f"{SPECIAL[kind][1]} ({held:,} held, {connections} measured)"
    return f"{SPECIAL[kind][1]} ({row.mix}, {connections})"


def cheap_requests(row: Any, cases: pd.DataFrame) -> str:
    """The requests a head-of-line case's reference makes, by name ('ECHO')."""
    reference = getattr(row, "reference_case", None)
    mix = cases.loc[reference, "mix"] if reference in cases.index else row.mix
    ops = sorted({e.op.upper() for e in _entries(mix)})
    return "/".join(ops) or "cheap"


# ---------------------------------------------------------------- the scorecard


@dataclass
class Cell:
    """One model in one workload: its figure, relative to the leader's, and how sure."""

    value: float  # median of its valid figures (or of its lower bounds)
    relative: float  # value / the leader's value
    interval: tuple[float, float] | None  # range of its round ratios to the leader
    badness: float  # >= 1: how many times worse than the leader (1 for the leader)
    status: str  # best, tie, worse, untested, bound, reference, missing
    note: str = ""  # why missing, or what a bound means
    n: int = 0  # valid figures behind it


@dataclass
class Workload:
    """One column of the scorecard: a case, a figure, its verdict and its cells."""

    name: str
    case: str
    figure: str
    better: str
    kind: str  # throughput, latency, cpu, memory, sweep
    verdict: CaseVerdict
    cells: dict[str, Cell] = field(default_factory=dict)
    sentence: str = ""
    native_upper_bound: bool = False  # ratios to native divide by a saturated native's figure
    notes: dict[str, str] = field(default_factory=dict)  # sweep: why each model's walk stopped
    label: str = ""  # a short heading
    cheap: str = ""  # head-of-line: the reference's requests, by name ('ECHO')

    @property
    def short(self) -> str:
        """A column heading for narrow places (the terminal)."""
        return self.label or self.name

    def answer_line(self) -> str:
        """The answer in one short line: the best model(s) and the leader's figure."""
        verdict = self.verdict
        if verdict.best is None:
            return f"{self.name}: no verdict"
        text = f"{self.name}: {verdict.best} ({_fmt(verdict.best_value, self.figure)}"
        native = self.ratio_to_native().get(verdict.best)
        if native is not None and native == native:
            text += f", {'≤ ' if self.native_upper_bound else ''}{native:.2g}× native"
        text += ")"
        if verdict.tied:
            text += f"; tied: {', '.join(verdict.tied)}"
        if verdict.client_bound:
            text += f"; client-bound, at least as fast: {', '.join(verdict.client_bound)}"
        if verdict.outcome == "unconfirmed":
            text += f"; unconfirmed (fewer than {MIN_PAIRS} rounds paired: no test)"
        return text

    @property
    def values(self) -> dict[str, float]:
        """model -> its median valid figure."""
        return {m: c.value for m, c in self.cells.items()
                if c.status not in ("missing", "bound") and c.value == c.value}

    def ratio_to_native(self) -> dict[str, float]:
        """model -> its figure over native's in the same case (empty without native)."""
        native = next((c for m, c in self.cells.items() if is_native(m)
                       and c.value == c.value and c.value), None)
        if native is None:
            return {}
        return {m: v / native.value for m, v in self.values.items() if not is_native(m)}


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
    return f"{_plural(int(row['connections']), 'connection')}, {requests_words(row['mix'])}"


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


# ---------------------------------------------------------------- sentences


def _fmt(value: float, figure: str) -> str:
    return metrics.fmt(value, figure)


def sentence(workload: Workload, masked: pd.DataFrame, rows: pd.DataFrame) -> str:
    """One sentence: the best model(s), their figure, and why the others lose."""
    verdict, figure = workload.verdict, workload.figure
    if verdict.best is None:
        return f"{workload.name}: no verdict: {_no_verdict(workload)}."
    lead = verdict.best
    head = f"{workload.name}: {lead} is best ({_fmt(verdict.best_value, figure)}"
    native = workload.ratio_to_native().get(lead)
    if native == native and native is not None:
        bound = "≤ " if workload.native_upper_bound else ""
        head += f", {bound}{native:.2g}× native"
    aside = _facts(workload, masked, lead)
    head += f", {aside})" if aside else ")"
    parts = [head]
    span = verdict.interval
    if verdict.tied:
        parts.append(tie_words(verdict))
    elif verdict.outcome == "unconfirmed":
        parts.append(f"ahead of {verdict.runner_up} by {_x(verdict.advantage)}×, unconfirmed "
                     f"(fewer than {MIN_PAIRS} rounds paired: no test)")
    elif verdict.runner_up and span:
        test = verdict.tests.get(verdict.runner_up)
        parts.append(f"ahead of {verdict.runner_up} by {_x(verdict.advantage)}× (rounds "
                     f"{_x(span[0])}–{_x(span[1])}×; signed-rank p {test.p:.3g} ≤ Holm level "
                     f"{verdict.level:.3g})" if test else
                     f"ahead of {verdict.runner_up} by {_x(verdict.advantage)}×")
    if verdict.client_bound:
        parts.append(f"{_names(verdict.client_bound)} saturated the client at that rate or "
                     "more (at least as fast)")
    reasons = _loser_reasons(workload, masked, rows)
    text = "; ".join(parts)
    if reasons:
        text += ". " + "; ".join(reasons)
    return text + "."


def tie_words(verdict: CaseVerdict) -> str:
    """Who ties the leader, and why: the rounds do not agree (noise) or the effect is under
    the minimum (small)."""
    groups: dict[str, list[str]] = {}
    for model in verdict.tied:
        groups.setdefault(verdict.tie_reasons.get(model, "noise"), []).append(model)
    words = {"noise": "the rounds do not tell them apart (noise too large to tell at Holm level "
                      f"{verdict.level:.3g})",
             "rounds": "too few of their rounds have valid figures to tell them apart at Holm "
                       f"level {verdict.level:.3g} (the others were left out)",
             "small": f"the effect is under the {verdict.margin:.0%} minimum",
             "holm": "the run's Holm procedure stopped at a verdict before this one"}
    return "; ".join(f"{_names(models)} tie{'s' if len(models) == 1 else ''} with it: "
                     f"{words.get(reason, reason)}" for reason, models in groups.items())


def _x(value: float) -> str:
    """A ratio to two decimals, '∞' for an unbounded one (a zero on the other side)."""
    return "∞" if value == math.inf else f"{value:.2f}"


def _names(models: list[str]) -> str:
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + " and " + models[-1]


def _no_verdict(workload: Workload) -> str:
    verdict = workload.verdict
    if workload.kind == "sweep" and verdict.note:
        return verdict.note
    if workload.kind == "memory" and not verdict.samples:  # no slope: say what it needs
        return verdict.basis
    bound = [m for m, c in workload.cells.items() if c.status == "bound" and not is_native(m)]
    if bound:
        floor = min(workload.cells[m].value for m in bound)
        return (f"the client saturated first for {_names(bound)} (each at least "
                f"{_fmt(floor, workload.figure)}): throughput cannot rank them here; an "
                "equal-load case can")
    reasons = {c.note for m, c in workload.cells.items() if c.status == "missing"
               and not is_native(m)}
    return "; ".join(sorted(reasons)) or verdict.basis


def _loser_reasons(workload: Workload, masked: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Why the others lose, measured: the nearest clear loser, the last, and the queueing."""
    verdict = workload.verdict
    lead = verdict.best or ""
    losers = _losers(workload)
    picks = list(dict.fromkeys([*losers[:1], *losers[-1:], *_most_threads(workload, masked)]))
    out = [_why(workload, m, lead, masked) for m in picks]
    queued = sorted({str(r.variant) for r in rows.itertuples()
                     if r.queues_at == r.queues_at and not is_native(str(r.variant))}
                    - set(picks))
    if queued and workload.kind not in ("sweep", "cpu", CHURN):  # CPU figures stand queued
        bounds = {str(r.variant): int(r.queues_at) for r in rows.itertuples()
                  if r.queues_at == r.queues_at}
        out.append(", ".join(f"{m} serves {_plural(bounds[m], 'client')} at once"
                             for m in queued) + " (the other connections wait)")
    return [o for o in out if o]


def _losers(workload: Workload) -> list[str]:
    """Competing models clearly behind the leader, nearest first."""
    cells = workload.cells
    behind = [(c.badness, m) for m, c in cells.items() if c.status == "worse"]
    if not behind and workload.kind in SPECIAL:  # unconfirmed: the measured ones behind it
        behind = [(c.badness, m) for m, c in cells.items()
                  if c.status == "untested" and c.badness == c.badness]
    return [m for _, m in sorted(behind)]


def _why(workload: Workload, model: str, lead: str, masked: pd.DataFrame) -> str:
    """The measured reason ``model`` loses to ``lead`` on this workload."""
    cell = workload.cells[model]
    figure = workload.figure
    if workload.kind == "memory":
        return (f"{model} holds {_fmt(cell.value, figure)} per connection "
                f"({cell.relative:.2g}× {lead}'s)")
    if workload.kind == "cpu":
        return f"{model} costs {cell.relative:.2g}× {lead}'s CPU per request"
    if workload.kind == "sweep":
        note = workload.notes.get(model, "earlier")
        if note.startswith("met the SLO"):  # every rate it was offered, all below lead's
            return f"{model} {note}, but its highest was lower"
        return f"{model} stops {note}"
    if workload.kind in SPECIAL:
        return _special_why(workload, model, lead, masked)
    mine, theirs = _medians(masked, model), _medians(masked, lead)
    cpu = _ratio(mine, theirs, "cpu_us_per_request")
    ctx = _ratio(mine, theirs, "ctx_switches_per_request")
    noun = metrics.noun(figure)
    gap = (f"{1 / cell.relative:.2g}× lower {noun}" if workload.better == "higher"
           else f"{cell.relative:.2g}× the {noun}")
    if cpu >= 1.15:
        return f"{model} costs {cpu:.2g}× {lead}'s CPU per request ({gap})"
    if ctx >= 1.5:
        return f"{model} switches context {ctx:.2g}× as often per request ({gap})"
    busy, lead_busy = mine.get("server_cpu_percent", math.nan), \
        theirs.get("server_cpu_percent", math.nan)
    if busy == busy and lead_busy == lead_busy and busy < 0.7 * lead_busy:
        return (f"{model} keeps its CPU {busy:.0f}% busy against {lead}'s {lead_busy:.0f}% "
                f"({gap}: it waits)")
    return f"{model} has {gap} at about the same CPU per request"


# ---------------------------------------------------------------- the workloads' sentences


def _median(masked: pd.DataFrame, model: str, column: str) -> float:
    """A model's median valid ``column`` in the case (NaN when none)."""
    if column not in masked:
        return math.nan
    values = pd.to_numeric(masked.loc[masked["variant"] == model, column], errors="coerce")
    return float(values.median()) if values.notna().any() else math.nan


def _facts(workload: Workload, masked: pd.DataFrame, model: str) -> str:
    """What the workload measured of a model besides its figure: connections/s (churn), the
    threads and RSS with the slow connections held, the cheap requests' p99 over their own."""
    if workload.kind == CHURN:
        rate = _median(masked, model, "connections_per_s")
        return f"{rate:,.0f} connections/s" if rate == rate else ""
    if workload.kind == SLOWLORIS:
        return _held_words(masked, model)
    if workload.kind == HOL:
        ratio = _median(masked, model, "p99_ratio_to_reference")
        if ratio != ratio:
            return ""
        return f"its {workload.cheap} p99 is {_times(ratio)}× its {workload.cheap}-only p99"
    return ""


def _held_words(masked: pd.DataFrame, model: str) -> str:
    """'1,017 threads and 46.8 MiB for 1,000 held connections, 3 slow-connection errors'."""
    threads, rss = _median(masked, model, "threads_max"), _median(masked, model, "rss_max")
    held = _median(masked, model, "slowloris_held")
    if held != held:
        held = _median(masked, model, "slowloris_connections")
    errors = _median(masked, model, "slowloris_errors")
    if threads != threads and rss != rss:
        return ""
    have = " and ".join(p for p in (
        _plural(int(threads), "thread") if threads == threads else "",
        _fmt(rss, "rss_per_connection_bytes") if rss == rss else "") if p)
    text = f"{have} for {_plural(int(held), 'held connection')}" if held == held else have
    if errors == errors and errors > 0:
        text += f", {_plural(int(errors), 'slow-connection error')}"
    return text


def _special_why(workload: Workload, model: str, lead: str, masked: pd.DataFrame) -> str:
    """Why ``model`` loses a churn, slowloris or head-of-line workload, measured."""
    relative = _times(workload.cells[model].relative)
    if workload.kind == SLOWLORIS:
        held = _held_words(masked, model)
        return f"{model} runs {held} ({relative}× {lead}'s p99)" if held else \
            f"{model} has {relative}× {lead}'s p99"
    if workload.kind == HOL:
        cheap = workload.cheap
        ratio = _median(masked, model, "p99_ratio_to_reference")
        own = f" and {_times(ratio)}× its {cheap}-only p99" if ratio == ratio else ""
        return f"{model}'s {cheap} p99 is {relative}× {lead}'s{own}"
    rate = _median(masked, model, "connections_per_s")
    text = f"{model}'s CPU per connection is {relative}× {lead}'s"
    return f"{text} ({rate:,.0f} connections/s)" if rate == rate else text


def _times(ratio: float) -> str:
    """A ratio for a sentence: two significant digits, whole above 100 ('5.2', '258')."""
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.2g}"


def _most_threads(workload: Workload, masked: pd.DataFrame) -> list[str]:
    """Slowloris: the model running the most threads for the held connections, when it runs
    more than twice the leader's (a thread per connection)."""
    if workload.kind != SLOWLORIS or workload.verdict.best is None:
        return []
    competing = _losers(workload)
    threads = {m: _median(masked, m, "threads_max") for m in competing}
    threads = {m: t for m, t in threads.items() if t == t}
    lead = _median(masked, workload.verdict.best, "threads_max")
    if not threads or lead != lead:
        return []
    most = max(threads, key=lambda m: threads[m])
    return [most] if threads[most] > 2 * max(lead, 1) else []


def _medians(masked: pd.DataFrame, model: str) -> dict[str, float]:
    rows = masked[masked["variant"] == model]
    return {m: float(rows[m].median()) for m in ("cpu_us_per_request",
                                                   "ctx_switches_per_request",
                                                   "server_cpu_percent") if m in rows}


def _ratio(mine: dict[str, float], theirs: dict[str, float], metric: str) -> float:
    a, b = mine.get(metric, math.nan), theirs.get(metric, math.nan)
    return a / b if a == a and b == b and b > 0 else math.nan


# ---------------------------------------------------------------- how sure


@dataclass
class Assurance:
    """How sure the answer is: repetitions, valid cells, the client, the machine."""

    repetitions: tuple[int, int]  # fewest and most trials of a (case, model)
    cells_total: int
    cells_valid: int
    per_case: dict[str, tuple[int, int]]  # case -> (valid, total) (case, model, metric) cells
    trials: int
    saturated: int  # trials whose client saturated
    saturated_models: list[str]
    load_before: list[float] | None
    load_after: list[float] | None
    cpus: int | None
    calibration: str
    left_out: dict[str, int] = field(default_factory=dict)  # trials per validity reason kind
    # case -> the reference model's spread over the rounds ((max - min) / median of its
    # valid throughput) where it passes NOISE_LIMIT: the machine drifted within the run
    noisy: dict[str, float] = field(default_factory=dict)


def assurance(run: Run) -> Assurance:
    """Count repetitions and valid (case, model, metric) cells; read the machine's state."""
    frame = run.frame
    env = run.meta.get("environment") or {}
    per_case: dict[str, tuple[int, int]] = {}
    reps = [0]
    if not frame.empty:
        counts = frame.groupby(["case", "variant"], sort=False)["trial_id"].size()
        reps = counts.tolist()
        for case, rows in frame.groupby("case", sort=False):
            per_case[str(case)] = _valid_cells(rows)
    saturated = frame[frame["client_saturated"]] if not frame.empty else frame
    return Assurance(
        repetitions=(int(min(reps)), int(max(reps))),
        cells_total=sum(t for _, t in per_case.values()),
        cells_valid=sum(v for v, _ in per_case.values()), per_case=per_case,
        trials=len(frame), saturated=len(saturated),
        saturated_models=list(dict.fromkeys(saturated["variant"].astype(str)))
        if not saturated.empty else [],
        load_before=env.get("load_average_before"), load_after=env.get("load_average_after"),
        cpus=env.get("cpu_count"), calibration=calibration_line(env.get("calibration")),
        left_out=validity.reason_counts(frame), noisy=reference_noise(frame))


NOISE_LIMIT = 0.10  # the reference's spread over the rounds above which a run is noisy


def reference_noise(frame: pd.DataFrame) -> dict[str, float]:
    """Per closed-loop case, native's spread over the rounds where it passes NOISE_LIMIT:
    the same C server, so what moves it is the machine (its valid throughputs only)."""
    if frame.empty:
        return {}
    rows = valid_figures(frame[(frame["mode"] != "open") & frame["variant"].map(is_native)])
    noisy = {}
    for case, group in rows.groupby("case", sort=False):
        values = group["throughput_rps"].dropna()
        if len(values) >= 2 and values.median() > 0:
            spread = float((values.max() - values.min()) / values.median())
            if spread > NOISE_LIMIT:
                noisy[str(case)] = round(spread, 3)
    return noisy


def _valid_cells(rows: pd.DataFrame) -> tuple[int, int]:
    """(valid, total) cells of one case: a (model, metric) is valid when any repetition's
    figure is valid."""
    valid = total = 0
    for _, group in rows.groupby("variant", sort=False):
        for metric in validity.CELL_METRICS:
            total += 1
            ok = group[validity.ok_column(metric)] & group[metric].notna() \
                if metric in group else pd.Series([False])
            valid += bool(ok.any())
    return valid, total


def calibration_line(calibration: dict[str, Any] | None) -> str:
    """The run's machine calibration (bench/run/calibration.py measures it) in one line: what
    ``bench run`` prints at the start and the report's "how sure" shows."""
    if not calibration:
        return "no calibration recorded"
    parts = []
    loop = calibration.get("python_loop") or {}
    if "alone" in loop:
        alone = ", ".join(f"CPU {cpu} {rate / 1e6:.2f}M" for cpu, rate in loop["alone"].items())
        together = sum(loop["all_at_once"].values()) / max(1, sum(loop["alone"].values()))
        parts.append(f"Python loop {alone} WORK iterations/s (all CPUs at once: "
                     f"{together:.0%} of alone)")
    elif "error" in loop:
        parts.append(f"Python loop: {loop['error']}")
    if "pingpong_same_cpu_per_s" in calibration:
        text = f"round trips {calibration['pingpong_same_cpu_per_s'] / 1e3:.0f}k/s on one CPU"
        if "pingpong_two_cpus_per_s" in calibration:
            text += f", {calibration['pingpong_two_cpus_per_s'] / 1e3:.0f}k/s across two"
        parts.append(text)
    if "syscall_ns" in calibration:
        parts.append(f"a system call {calibration['syscall_ns']:.0f} ns")
    if "native_error" in calibration:
        parts.append(f"C part: {calibration['native_error']}")
    return "; ".join(parts) or "no calibration recorded"
