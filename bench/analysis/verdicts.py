"""Verdicts: the best model at each scenario point, and who it cannot be told apart from.

Closed-loop cases are judged by median throughput, open-loop cases at one rate for every model
(equal offered load) by median p99, sweeps by the highest offered rate within the SLO. Only
valid figures count (``validity``), and ``native`` (the ceiling) never competes.

The leader is the best median. Whether it is ahead of another model is decided on the rounds:
repetitions are interleaved (round r runs every model once), so within a round both models met
the same machine, and the ratio leader ÷ other of that round has the machine's drift divided
out. The test is the exact two-sided Wilcoxon signed-rank test of those log ratios
(``significance.signed_rank_p``): two-sided although the question has a direction, because the
leader was picked by the same figures (with two equal models, whichever leads "wins" all its
rounds twice as often as a one-sided p says). The leader is "clear" of everyone only when
every such test rejects (an intersection-union test: no correction inside a verdict) and the effect
(the median ratio) reaches the minimum ``margin``. Across the verdicts of a run the tests are
Holm-corrected (``settle``), so the chance that a run shows any false "clear" is at most
``significance.ALPHA`` (tests/test_verdicts_null.py simulates it). A model whose test does not
reject at its verdict's Holm level ties the leader: "noise" (the rounds do not agree) or
"small" (they agree, but by less than the minimum effect). With fewer than two rounds paired
there is no test: "unconfirmed". The interval shown is the range of the round ratios, not a
confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench import metrics
from bench.analysis import intervals, significance, validity
from bench.analysis.frames import C10K_GROUP, Run, case_table, is_native, valid_figures
from bench.analysis.sweeps import SweepResult

DEFAULT_MARGIN = 0.05  # the minimum effect a "clear" verdict must reach
MIN_PAIRS = 2  # rounds paired for a test at all
HOLM_WORDS = "; Holm level "

Paired = dict[str, dict[int, float]]  # variant -> round -> its figure


@dataclass
class Test:
    """The leader against one other model, on their paired rounds."""

    p: float  # two-sided exact signed-rank p (the leader was chosen by these figures)
    effect: float  # median round ratio, >= 1 when the leader is ahead
    pairs: int
    span: tuple[float, float] | None  # the round ratios' range


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
    tests: dict[str, Test] = field(default_factory=dict)


def paired_test(best: dict[int, float], other: dict[int, float], better: str) -> Test | None:
    """The leader's rounds against another's: None with fewer than MIN_PAIRS rounds in common."""
    rounds = sorted(set(best) & set(other))
    top = [best[r] for r in rounds]
    rest = [other[r] for r in rounds]
    logs = significance.paired_log_ratios(top, rest) if better == "higher" else \
        significance.paired_log_ratios(rest, top)
    if len(logs) < MIN_PAIRS:
        return None
    ratios = sorted(math.exp(x) for x in logs)
    return Test(significance.signed_rank_p(logs),
                math.exp(float(intervals.median(logs))), len(logs), (ratios[0], ratios[-1]))


def _by_index(samples: dict[str, list[float]]) -> Paired:
    return {k: dict(enumerate(v)) for k, v in samples.items()}


def rank(samples: dict[str, list[float]], better: str, margin: float = DEFAULT_MARGIN,
         bounds: dict[str, list[float]] | None = None, paired: Paired | None = None
         ) -> Ranking:
    """Rank variants (native left out) by median; the leader's test against each other model
    on their paired rounds (``paired``: variant -> round -> figure; by default the samples'
    order). ``tied`` here is at the unadjusted ALPHA: ``settle`` applies the run's Holm levels.

    ``bounds``: figures known only as lower bounds (throughput with a saturated client): a
    variant whose bound reaches the leader's median cannot be ruled out (``client_bound``).
    """
    paired = paired if paired is not None else _by_index(samples)
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
    tests = {other: test for other in order[1:]
             if (test := paired_test(paired.get(leader, {}), paired.get(other, {}), better))}
    untested = [other for other in order[1:] if other not in tests]
    tied = [other for other in order[1:]
            if other in tests and _tie_reason(tests[other], significance.ALPHA, margin)]
    runner = order[1]
    test = tests.get(runner)
    gap = intervals.advantage(samples[leader], samples[runner], better)
    small = test is not None and _tie_reason(test, significance.ALPHA, margin) == "small"
    basis = (f"exact signed-rank test on {test.pairs} round-paired ratios"
             if test else f"no test: fewer than {MIN_PAIRS} rounds paired")
    return Ranking(leader, order, tied, untested, runner, test.span if test else None, gap,
                   basis, bound, small, tests)


def _tie_reason(test: Test, level: float, margin: float) -> str | None:
    """Why ``test`` leaves the other model tied with the leader at ``level``: 'rounds' (too
    few rounds paired for any result to reach it), 'noise' (the test does not reject), 'small'
    (it does, but the effect is under the minimum), or None."""
    if test.p > level:
        return "rounds" if significance.smallest_p(test.pairs) > level else "noise"
    if test.effect < 1 + margin:
        return "small"
    return None


def settle(verdicts: list[CaseVerdict], alpha: float = significance.ALPHA) -> None:
    """Holm across a run's verdicts: each verdict's p is the largest of its leader's tests
    (intersection-union); the k-th smallest is judged at alpha / (m - k + 1), and once one
    fails every later one fails too. Each verdict's ties, with their reasons, follow from its
    level."""
    tested = [v for v in verdicts if v.best is not None and v.tests]
    order = sorted(tested, key=lambda v: max(t.p for t in v.tests.values()))
    failed = False
    for k, verdict in enumerate(order):
        level = alpha / (len(order) - k)
        failed = failed or max(t.p for t in verdict.tests.values()) > level
        verdict.level, verdict.family = level, len(order)
        reasons = {other: _tie_reason(test, level, verdict.margin) or ""
                   for other, test in verdict.tests.items()}
        verdict.tie_reasons = {k2: r for k2, r in reasons.items() if r}
        if failed and not verdict.tie_reasons and verdict.runner_up in verdict.tests:
            # each test passes its level, but Holm stopped at an earlier verdict: no claim
            verdict.tie_reasons = {verdict.runner_up: "holm"}
        verdict.tied = [other for other in verdict.tests if other in verdict.tie_reasons]
        runner = verdict.tests.get(verdict.runner_up or "")
        verdict.small_effect = bool(runner) and verdict.tie_reasons.get(
            verdict.runner_up or "") == "small"
        verdict.basis = (verdict.basis.split(HOLM_WORDS)[0]
                         + f"{HOLM_WORDS}{level:.4f} over {len(order)} verdicts"
                         + ("" if not failed else " (Holm stopped before it)"))


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
    tests: dict[str, Test] = field(default_factory=dict)  # the leader against each other
    tie_reasons: dict[str, str] = field(default_factory=dict)  # tied model -> noise | small
    level: float = significance.ALPHA  # its Holm level in the run (0: Holm stopped before it)
    family: int = 1  # verdicts in the run's Holm family

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


def verdict_of(case: str, group: str, metric: str, figure: str, better: str,
             samples: dict[str, list[float]], margin: float, excluded: int,
             bounds: dict[str, list[float]] | None = None, paired: Paired | None = None
             ) -> CaseVerdict:
    ranking = rank(samples, better, margin, bounds, paired)
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
        samples=samples, bounds=bounds or {}, tests=ranking.tests)
    if ranking.client_bound:
        verdict.note = (f"{', '.join(ranking.client_bound)} saturated the client at or above "
                        f"{ranking.leader}'s figure: at least as fast, by how much unknown")
    return verdict


def _samples(rows: pd.DataFrame, metric: str) -> dict[str, list[float]]:
    """variant -> the valid figures of ``metric`` (rows already masked by validity)."""
    return {str(v): g[metric].dropna().tolist() for v, g in rows.groupby("variant", sort=False)}


def paired_samples(rows: pd.DataFrame, metric: str) -> Paired:
    """variant -> round (repeat) -> the valid figure of ``metric`` (the median where a round
    has several)."""
    return {str(v): {int(r): float(x) for r, x in
                     g.dropna(subset=[metric]).groupby("repeat")[metric].median().items()}
            for v, g in rows.groupby("variant", sort=False)}


def figure_verdict(run: Run, case: str, figure: str, better: str,
                   margin: float = DEFAULT_MARGIN) -> CaseVerdict:
    """The best model of one case on one figure (its valid values only). Throughput measured
    with a saturated client counts as a lower bound (``client_bound``)."""
    frame = run.frame
    rows = frame[frame["case"] == case]
    group = str(rows["group"].iloc[0]) if not rows.empty else ""
    bounds = None
    if figure == "throughput_rps":
        # a lower bound only where saturation alone left it out (validity.Validity)
        bounds = _samples(rows[rows["throughput_bound"].astype(bool)], figure)
    valid = valid_figures(rows)
    verdict = verdict_of(case, group, metrics.words(figure), figure, better,
                       _samples(valid, figure), margin,
                       int((~rows[validity.ok_column(figure)]).sum()), bounds=bounds,
                       paired=paired_samples(valid, figure))
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
        verdict = verdict_of(sweep.label, sweep.group, metrics.words("rate_within_slo"),
                           "rate_within_slo", "higher", samples, margin, sweep.excluded)
        if verdict.best is not None and verdict.best_value <= 0:
            verdict = verdict_of(sweep.label, sweep.group, verdict.metric, "rate_within_slo",
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

