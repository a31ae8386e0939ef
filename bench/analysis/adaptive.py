"""Which workloads are still undecided: their top models inside each other's interval.

The run's adaptive phase (bench/run/adaptive.py) asks this between its rounds, of the records
so far, and spends its remaining budget on more repetitions of those cases for those models.
It decides nothing itself: the verdicts are the report's own (``sweeps.sweep_results``,
``verdicts.all_verdicts``, ``scorecard.workloads``: the bootstrap interval of the ratio of
medians, validity per figure), so the phase repeats exactly what the answer could not decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.frames import Run, case_table, summary_frame
from bench.analysis.scorecard import workloads
from bench.analysis.sweeps import sweep_results
from bench.analysis.verdicts import CaseVerdict, all_verdicts

# more repetitions can decide these; a client-bound leader needs a faster client instead, and
# a tie inside the minimum effect (``_equivalent``) is as decided as it will get
DECIDABLE = ("tie", "unconfirmed")


@dataclass(frozen=True)
class Undecided:
    """One workload the answer cannot decide yet, and what would help."""

    workload: str  # its name, as answer.json has it
    metric: str
    outcome: str  # "tie" or "unconfirmed"
    cases: tuple[str, ...]  # the cases to repeat (a sweep: every point of it)
    models: tuple[str, ...]  # model labels, best median first: the leader and its rivals
    why: str
    repetitions: int  # the fewest repetitions any of those models has in those cases


def undecided(records: Mapping[str, dict[str, Any]], meta: Mapping[str, Any] | None = None
              ) -> list[Undecided]:
    """Every workload whose leader is tied or unconfirmed, in the report's order."""
    frame = summary_frame(list(records.values()))
    if frame.empty:
        return []
    run = Run(Path("."), dict(meta or {}), dict(records), frame)
    sweeps = sweep_results(run)
    cases = case_table(frame)
    label_of = dict(zip(frame["variant"], frame["model"], strict=False))
    found = []
    for item in workloads(run, all_verdicts(run, sweeps), sweeps):
        verdict = item.verdict
        if verdict.outcome not in DECIDABLE or _equivalent(verdict):
            continue
        variants = _rivals(verdict)
        if len(variants) < 2:
            continue
        points = tuple(str(c) for c in cases.loc[cases["series_label"] == item.case, "case"]) \
            if item.kind == "sweep" else (item.case,)
        models = tuple(str(label_of.get(v, v)) for v in variants)
        found.append(Undecided(item.name, item.figure, verdict.outcome, points, models,
                               _why(verdict), _fewest(frame, points, models)))
    return found


def _equivalent(verdict: CaseVerdict) -> bool:
    """A tie whose whole interval lies under the minimum effect worth naming (the margin): the
    two are as good as equal, and more repetitions would only say so again."""
    span = verdict.interval
    return verdict.outcome == "tie" and span is not None and span[1] <= 1.0 + verdict.margin


def _rivals(verdict: CaseVerdict) -> list[str]:
    """The leader and every model it cannot be told apart from yet, best median first:
    its ties, and (unconfirmed) those with no interval against it."""
    rivals = [verdict.best, *verdict.tied] if verdict.best else []
    if verdict.outcome == "unconfirmed" and verdict.runner_up:
        rivals.append(verdict.runner_up)
    return list(dict.fromkeys(r for r in rivals if r))


def _why(verdict: CaseVerdict) -> str:
    if verdict.outcome == "tie":
        low, high = verdict.interval or (float("nan"), float("nan"))
        return (f"{verdict.best} and {', '.join(verdict.tied)} inside each other's interval "
                f"(advantage {verdict.advantage:.3g}, interval {low:.3g}-{high:.3g})")
    return (f"{verdict.best} ahead of {verdict.runner_up} with no interval yet "
            f"({verdict.basis})")


def _fewest(frame: Any, cases: tuple[str, ...], models: tuple[str, ...]) -> int:
    rows = frame[frame["case"].isin(cases) & frame["model"].isin(models)]
    if rows.empty:
        return 0
    return int(rows.groupby(["case", "model"]).size().min())
