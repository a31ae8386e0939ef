"""One column of the scorecard (``Workload``) and its cells (``Cell``): a case, a figure, its
verdict, and each model's figure relative to the leader's (bench/analysis/scorecard.py builds
them, sentences.py words them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import metrics
from bench.analysis.frames import is_native
from bench.analysis.verdicts import (
    MIN_PAIRS,
    CaseVerdict,
)


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
        text = f"{self.name}: {verdict.best} ({metrics.fmt(verdict.best_value, self.figure)}"
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
