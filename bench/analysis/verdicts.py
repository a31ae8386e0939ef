"""Verdicts: the best model at each scenario point, and who it cannot be told apart from.

Closed-loop cases are judged by median throughput, open-loop cases at one rate for every model
(equal offered load) by median p99, sweeps by the highest offered rate within the SLO. Only
valid figures count (``validity``), and ``native`` (the ceiling) never competes.

A model ties the leader when the bootstrap interval of the leader's advantage (the ratio of
medians, >= 1 when ahead) holds 1. With a single repetition on either side there is no
interval: the leader is named, the outcome is "unconfirmed", and nothing is decided by a fixed
margin. The margin stays as the stated minimum effect: a gap outside the noise but smaller
than it is called small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.analysis import intervals, validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, is_native, valid_figures
from bench.analysis.intervals import CONFIDENCE, RESAMPLES
from bench.analysis.sweeps import SweepResult

DEFAULT_MARGIN = 0.05  # the minimum effect worth naming; never decides a tie
BOOTSTRAP_RESAMPLES = RESAMPLES


@dataclass
class Ranking:
    """Models ranked on one figure, the leader's ties and how sure the order is."""

    leader: str | None
    order: list[str]  # competing variants, best median first
    tied: list[str]  # inside the leader's interval
    untested: list[str]  # no interval to compare with (a single repetition on a side)
    runner_up: str | None
    interval: tuple[float, float] | None  # leader's advantage over the runner-up
    advantage: float  # its point value
    basis: str
    client_bound: list[str] = field(default_factory=list)  # saturated, yet reached the leader
    small: bool = False  # outside the noise, but under the minimum effect


def compare(best: list[float], other: list[float], better: str = "higher"
            ) -> tuple[bool | None, str]:
    """Whether ``other`` ties ``best``: True (its interval holds 1), False (clearly apart), or
    None (a single repetition on a side: no interval), and the basis in words."""
    span = intervals.advantage_interval(best, other, better)
    if span is None:
        return None, f"no interval: {min(len(best), len(other))} repetition on a side"
    basis = (f"bootstrap {CONFIDENCE:.0%} interval of the ratio of medians "
             f"(n={len(best)} vs {len(other)})")
    return bool(span[0] <= 1.0 <= span[1]), basis


def rank(samples: dict[str, list[float]], better: str, margin: float = DEFAULT_MARGIN,
         bounds: dict[str, list[float]] | None = None) -> Ranking:
    """Rank variants (native left out) by median; who ties the leader, by the interval.

    ``bounds``: figures known only as lower bounds (throughput with a saturated client): a
    variant whose bound reaches the leader's median cannot be ruled out (``client_bound``).
    """
    sign = -1.0 if better == "higher" else 1.0
    order = [k for _, k in sorted((sign * intervals.median(v), k) for k, v in samples.items()
                                  if v and not is_native(k))]
    if not order:
        return Ranking(None, [], [], [], None, None, math.nan, "no valid figure")
    leader = order[0]
    bound = _reaching(bounds or {}, samples[leader], better, set(order))
    if len(order) == 1:
        return Ranking(leader, order, [], [], None, None, math.nan,
                       "only one model with a valid figure", bound)
    tied, untested, bases = [], [], []
    for other in order[1:]:
        tie, basis = compare(samples[leader], samples[other], better)
        bases.append(basis)
        if tie is None:
            untested.append(other)
        elif tie:
            tied.append(other)
    runner = order[1]
    span = intervals.advantage_interval(samples[leader], samples[runner], better)
    gap = intervals.advantage(samples[leader], samples[runner], better)
    small = span is not None and span[0] > 1.0 and gap - 1.0 < margin
    return Ranking(leader, order, tied, untested, runner, span, gap, bases[0], bound, small)


def _reaching(bounds: dict[str, list[float]], leader: list[float], better: str,
              ranked: set[str]) -> list[str]:
    """Variants with only lower bounds that reach the leader's median (higher is better)."""
    if better != "higher":
        return []
    top = intervals.median(leader)
    return [k for k, v in bounds.items() if v and k not in ranked and not is_native(k)
            and intervals.median(v) >= top]


@dataclass
class CaseVerdict:
    """The best model at one scenario point, and who it cannot be told apart from."""

    case: str
    group: str
    metric: str  # in words, e.g. "median throughput (req/s)"
    best: str | None
    best_value: float
    runner_up: str | None
    runner_up_value: float
    tied: list[str]  # other models inside the leader's interval
    basis: str
    native_value: float
    excluded: int  # trials of this case whose deciding figure is left out
    note: str = ""
    best_is_floor: bool = False  # sweep: the best met the SLO everywhere, its limit lies higher
    figure: str = "throughput_rps"  # the frame column (or "rate_within_slo") it ranks
    better: str = "higher"
    interval: tuple[float, float] | None = None  # best's advantage over the runner-up
    advantage: float = math.nan
    client_bound: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    small_effect: bool = False
    margin: float = DEFAULT_MARGIN
    samples: dict[str, list[float]] = field(default_factory=dict)  # the figures it ranked
    bounds: dict[str, list[float]] = field(default_factory=dict)  # lower bounds (saturated)

    @property
    def outcome(self) -> str:
        """'none' (no valid figure), 'client-bound', 'tie', 'unconfirmed' (no interval with
        the runner-up) or 'clear' (the leader alone, or ahead outside the noise)."""
        if self.best is None:
            return "none"
        if self.client_bound:
            return "client-bound"
        if self.tied:
            return "tie"
        if self.runner_up is not None and self.interval is None:
            return "unconfirmed"
        return "clear"

    @property
    def contenders(self) -> list[str]:
        """Every model that cannot be ruled out of first place, the leader first."""
        return [] if self.best is None else [self.best, *self.tied, *self.client_bound]


def _verdict(case: str, group: str, metric: str, figure: str, better: str,
             samples: dict[str, list[float]], margin: float, excluded: int,
             bounds: dict[str, list[float]] | None = None) -> CaseVerdict:
    ranking = rank(samples, better, margin, bounds)
    natives = [x for k, v in samples.items() if is_native(k) for x in v]
    verdict = CaseVerdict(
        case=case, group=group, metric=metric, best=ranking.leader,
        best_value=intervals.median(samples.get(ranking.leader or "", [])),
        runner_up=ranking.runner_up,
        runner_up_value=intervals.median(samples.get(ranking.runner_up or "", [])),
        tied=ranking.tied, basis=ranking.basis, native_value=intervals.median(natives),
        excluded=excluded, figure=figure, better=better, interval=ranking.interval,
        advantage=ranking.advantage, client_bound=ranking.client_bound,
        untested=ranking.untested, small_effect=ranking.small, margin=margin,
        samples=samples, bounds=bounds or {})
    if ranking.client_bound:
        verdict.note = (f"{', '.join(ranking.client_bound)} saturated the client at or above "
                        f"{ranking.leader}'s figure: at least as fast, by how much unknown")
    return verdict


def _samples(rows: pd.DataFrame, metric: str) -> dict[str, list[float]]:
    """variant -> the valid figures of ``metric`` (rows already masked by validity)."""
    return {str(v): g[metric].dropna().tolist() for v, g in rows.groupby("variant", sort=False)}


FIGURE_WORDS = {
    "throughput_rps": "median throughput (req/s)", "p99_us": "median p99 (µs)",
    "cpu_us_per_request": "median server CPU per request (µs)",
    "rss_per_connection_bytes": "median RSS per connection (bytes)",
    "rss_per_held_connection_bytes": "median RSS per connection held (bytes)",
}


def figure_verdict(run: Run, case: str, figure: str, better: str,
                   margin: float = DEFAULT_MARGIN) -> CaseVerdict:
    """The best model of one case on one figure (its valid values only). Throughput measured
    with a saturated client counts as a lower bound (``client_bound``)."""
    frame = run.frame
    rows = frame[frame["case"] == case]
    group = str(rows["group"].iloc[0]) if not rows.empty else ""
    bounds = None
    if figure == "throughput_rps":
        saturated = rows[rows["client_saturated"] & ~rows["has_errors"]
                         & rows["queues_at"].isna()]
        bounds = _samples(saturated, figure)
    verdict = _verdict(case, group, FIGURE_WORDS.get(figure, figure), figure, better,
                       _samples(valid_figures(rows), figure), margin,
                       int((~rows[validity.ok_column(figure)]).sum()), bounds=bounds)
    verdict.note = "; ".join(filter(None, [verdict.note, _ceiling_note(verdict)]))
    return verdict


def closed_verdicts(run: Run, margin: float = DEFAULT_MARGIN) -> list[CaseVerdict]:
    """One verdict per closed-loop case (C10K aside): the best model by median throughput."""
    if run.frame.empty:
        return []
    cases = case_table(run.frame)
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    return [figure_verdict(run, str(c), "throughput_rps", "higher", margin)
            for c in closed["case"]]


def equal_load_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """Open-loop cases outside C10K at one absolute rate for every model (no fraction of
    each model's own maximum): where models are compared at the same offered load."""
    return cases[(cases["mode"] == "open") & (cases["group"] != C10K_GROUP)
                 & cases["offered_fraction"].isna()]


def equal_load_verdicts(run: Run, margin: float = DEFAULT_MARGIN) -> list[CaseVerdict]:
    """One verdict per equal-load case: the best model by median p99 (lower is better)."""
    if run.frame.empty:
        return []
    verdicts = []
    for case in equal_load_cases(case_table(run.frame))["case"]:
        verdict = figure_verdict(run, str(case), "p99_us", "lower", margin)
        verdict.metric = "median p99 at equal load (µs)"
        verdicts.append(verdict)
    return verdicts


def sweep_verdicts(sweeps: list[SweepResult], margin: float = DEFAULT_MARGIN
                   ) -> list[CaseVerdict]:
    """One verdict per sweep: the best model by highest offered rate within the SLO, or, when
    no model met it at its lowest rate, none, with each model's reason."""
    verdicts = []
    for sweep in sweeps:
        samples = {k: v for k, v in sweep.within_slo.items() if v}
        verdict = _verdict(sweep.label, sweep.group, "highest rate within SLO (req/s)",
                           "rate_within_slo", "higher", samples, margin, sweep.excluded)
        if verdict.best is not None and verdict.best_value <= 0:
            verdict = _verdict(sweep.label, sweep.group, verdict.metric, "rate_within_slo",
                               "higher", {}, margin, sweep.excluded)
            verdict.basis = "no model met the SLO at its lowest offered rate"
            verdict.note = "; ".join(f"{v}: {why}" for v, why in sweep.stopped.items())
        else:
            floors = [v for v, top in sweep.ceiling_not_found.items()
                      if top and not is_native(v)]
            verdict.note = (f"{', '.join(floors)} met the SLO at every offered rate: the "
                            "figure is a floor" if floors else "")
            verdict.best_is_floor = verdict.best in floors
        verdict.basis += f"; SLO {sweep.describe_target()}"
        verdicts.append(verdict)
    return verdicts


def _ceiling_note(verdict: CaseVerdict) -> str:
    """A warning when a Python model outran the native ceiling (something else was the limit)."""
    best, native = verdict.best_value, verdict.native_value
    if verdict.figure == "throughput_rps" and best == best and native == native \
            and best > native * (1 + verdict.margin):
        return ("faster than the native ceiling: the load generator or a busy machine, not the "
                "servers, probably set these figures")
    return ""


def all_verdicts(run: Run, sweeps: list[SweepResult], margin: float = DEFAULT_MARGIN
                 ) -> list[CaseVerdict]:
    """Every verdict of a run, in the report's order: closed loop, equal load, sweeps."""
    return (closed_verdicts(run, margin) + equal_load_verdicts(run, margin)
            + sweep_verdicts(sweeps, margin))

