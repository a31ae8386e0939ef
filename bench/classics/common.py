"""What every classic shares: the finding it yields, and the run's trials of its group.

An experiment module (``bench/classics/idle.py`` and its siblings) declares its published source
and expectation and turns its group's trials into a ``Finding``: what was measured, a verdict
(``REPRODUCED``, ``NOT_REPRODUCED`` with the measured reason, or ``NOT_MEASURABLE`` with the
reason), and the data of its chart in the published form.

Every figure read here has passed ``bench.analysis.validity.judge`` (through the summary frame's
masked figures) unless an experiment says which rule it reads past and why: overload measures
the rate a model could not keep, which the rate rule exists to leave out of rankings, and the
client's lag behind its schedule that comes with it; omission reads every trial that ran to the
end, whatever the rules say, because the pause it causes is what they would judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from bench.analysis import intervals, significance, validity
from bench.analysis.frames import Run, valid_figures

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURABLE = "not measurable here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_MEASURABLE)
ALPHA = significance.ALPHA


@dataclass(frozen=True)
class Published:
    """What the field published: the citation, the expectation in words, and its numbers."""

    title: str
    source: str
    expectation: str
    numbers: Mapping[str, Any] | None = None


@dataclass
class Finding:
    """One experiment's outcome, as classics.json holds it."""

    name: str
    published: Published
    verdict: str
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def to_dict(self) -> dict[str, Any]:
        published = asdict(self.published)
        return {"name": self.name, "title": published.pop("title"), **published,
                "verdict": self.verdict, "reason": self.reason, "measured": self.measured,
                "chart": self.chart, "left_out": self.left_out}


def group_rows(run: Run, group: str) -> pd.DataFrame:
    """The summary rows of one group's trials as recorded, figures validity left out kept (for
    an experiment that says which rule it reads past)."""
    frame = run.frame
    if frame.empty or "group" not in frame:
        return frame
    return frame[frame["group"] == group]


def group_trials(run: Run, group: str) -> pd.DataFrame:
    """The summary rows of one group's trials, every figure validity left out set to NaN."""
    return valid_figures(group_rows(run, group))


def interpreters(run: Run) -> list[dict[str, Any]]:
    """The run's server interpreters as run.json describes them (bench/environment.py)."""
    return list((run.meta.get("environment") or {}).get("interpreters") or [])


def left_out(rows: pd.DataFrame) -> dict[str, int]:
    """How many of these trials lost a figure, by reason (validity's kinds)."""
    if rows.empty:
        return {}
    return {kind: count for kind, count in validity.reason_counts(rows).items() if count}


def missing(name: str, published: Published, group: str) -> Finding:
    """The finding of an experiment whose group has no trial in the run."""
    return Finding(name, published, NOT_MEASURABLE,
                   f"the run has no trial of the {group!r} group (bench/scenarios/classics.toml)")


def by_round(rows: pd.DataFrame, metric: str) -> dict[int, float]:
    """One trial's figure per round (``repeat``), NaN where it was left out."""
    return {int(r): float(v) for r, v in zip(rows["repeat"], rows[metric], strict=True)}


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> list[float]:
    """a/b per round present in both, where significance's pairing keeps both figures
    (positive and finite)."""
    rounds = sorted(set(a) & set(b))
    return [math.exp(x) for x in significance.paired_log_ratios([a[r] for r in rounds],
                                                                [b[r] for r in rounds])]


def median(values: Iterable[float]) -> float | None:
    """intervals.median of the figures validity kept (NaN is a figure left out); None when
    none was kept, which the findings write as JSON's null."""
    numbers = [v for v in values if v == v]
    return intervals.median(numbers) if numbers else None


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, range and count of per-round values (ratios, factors)."""
    numbers = [v for v in values if v == v]
    middle = median(numbers)
    if middle is None:
        return {"median": None, "low": None, "high": None, "n": 0}
    return {"median": round(middle, digits),
            "low": round(min(numbers), digits), "high": round(max(numbers), digits),
            "n": len(numbers)}


def ratio_test(ratios: Sequence[float], alternative: str = "two-sided") -> float:
    """Exact signed-rank p of log ratios against 1 (``greater``: the ratios exceed 1)."""
    return significance.signed_rank_p([math.log(r) for r in ratios], alternative)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or value != value else round(float(value), digits)
