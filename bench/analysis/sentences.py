"""One sentence per workload: the best model(s) and the measured reason each other model
loses, every figure computed from the run (bench/analysis/scorecard.py calls ``sentence``).
"""

from __future__ import annotations

import math

import pandas as pd

from bench import metrics
from bench.analysis.frames import is_native
from bench.analysis.questions import (
    CHURN,
    HOL,
    SLOWLORIS,
    SPECIAL,
    plural,
)
from bench.analysis.verdicts import (
    MIN_PAIRS,
    CaseVerdict,
)
from bench.analysis.workload import Workload


def sentence(workload: Workload, masked: pd.DataFrame, rows: pd.DataFrame) -> str:
    """One sentence: the best model(s), their figure, and why the others lose."""
    verdict, figure = workload.verdict, workload.figure
    if verdict.best is None:
        return f"{workload.name}: no verdict: {_no_verdict(workload)}."
    lead = verdict.best
    head = f"{workload.name}: {lead} is best ({metrics.fmt(verdict.best_value, figure)}"
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
                f"{metrics.fmt(floor, workload.figure)}): throughput cannot rank them here; an "
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
        out.append(", ".join(f"{m} serves {plural(bounds[m], 'client')} at once"
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
        return (f"{model} holds {metrics.fmt(cell.value, figure)} per connection "
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


# ---------------------------------------------------------------- the special workloads' reasons


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
        plural(int(threads), "thread") if threads == threads else "",
        metrics.fmt(rss, "rss_per_connection_bytes") if rss == rss else "") if p)
    text = f"{have} for {plural(int(held), 'held connection')}" if held == held else have
    if errors == errors and errors > 0:
        text += f", {plural(int(errors), 'slow-connection error')}"
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
