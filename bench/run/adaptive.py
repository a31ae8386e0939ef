"""The adaptive phase: after the plan, spend what is left of the time budget on the cases whose
top models the answer cannot tell apart yet.

Rounds, one after another: each asks the analysis which workloads are tied or unconfirmed
(``bench.analysis.adaptive.undecided``, the report's own verdicts on the records so far), and
runs one more repetition of those cases for their rivals (the leader and the models inside its
interval, at most ``MAX_RIVALS``) and for ``native`` (the reference every ratio is taken to: the
extra repetitions come minutes after the plan's, on a machine whose speed may have changed),
the workloads with the fewest repetitions first, as many as the remaining budget holds. The
round's trials run in an order shuffled by ``random.Random(seed + round)``, so no model always
goes first, and the same records give the same rounds.
Every round is recorded in run.json under ``adaptive`` (which cases, which models, why), as is
the reason the phase stopped. Extra trials are ordinary trials (``<case>--<model>--r<N>``,
N past the plan's repetitions); they are not in run.json's ``plan``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console

from bench.analysis.adaptive import Undecided, undecided
from bench.run.scenario import Scenario, trial_estimate_s
from bench.store import ModelSpec, RunStore, TrialSpec

MAX_RIVALS = 4  # models repeated per undecided workload: the leader and its nearest rivals
REFERENCE = "native"  # repeated with them: a machine that changes speed moves both alike
MAX_ROUNDS = 50  # a bound on the loop; the budget ends it long before


class AdaptivePhase:
    """The runner's ``extra`` callback: the next round's trials, or none when done."""

    def __init__(self, store: RunStore, scenario: Scenario, trials: Sequence[TrialSpec],
                 budget_s: float, started: float, console: Console | None = None,
                 spent_before_s: float = 0.0) -> None:
        self.store, self.scenario = store, scenario
        self.cases = {case.name: case for case in scenario.cases}
        self.servers: dict[str, ModelSpec] = {t.server.label: t.server for t in trials}
        self.budget_s, self.started = budget_s, started
        self.spent_before_s = spent_before_s  # trial time of this run before a resume
        self.console = console or Console()
        # a resumed run goes on from the rounds it recorded
        before = (store.read_run().get("adaptive") or {}) if store.run_json.exists() else {}
        self.rounds: list[dict[str, Any]] = list(before.get("rounds") or [])
        self.state: dict[str, Any] = {
            "seed": scenario.seed, "budget_s": budget_s, "max_rivals": MAX_RIVALS,
            "rounds": self.rounds, "extra_trials": int(before.get("extra_trials") or 0),
            "stopped": None}

    def remaining_s(self) -> float:
        return self.budget_s - self.spent_before_s - (time.monotonic() - self.started)

    def __call__(self, records: Mapping[str, dict[str, Any]]) -> list[TrialSpec]:
        remaining = self.remaining_s()
        if len(self.rounds) >= MAX_ROUNDS:
            return self._stop("round limit reached")
        asked = time.monotonic()
        needs = sorted(undecided(records, self.store.read_run()),
                       key=lambda need: need.repetitions)
        analysis_s = time.monotonic() - asked
        if not needs:
            return self._stop("every workload decided")
        chosen, entries = self._fill(needs, records, remaining - analysis_s)
        if not chosen:
            return self._stop(f"budget spent ({max(0.0, remaining):.1f} s left, "
                              f"{len(needs)} workload(s) undecided)")
        number = len(self.rounds) + 1
        random.Random(self.scenario.seed + number).shuffle(chosen)
        self.rounds.append({"round": number, "budget_left_s": round(remaining, 1),
                            "analysis_s": round(analysis_s, 2),
                            "undecided": len(needs), "workloads": entries,
                            "trials": [t.trial_id for t in chosen]})
        self.state["extra_trials"] += len(chosen)
        self._save()
        self.console.print(f"adaptive round {number}: {len(chosen)} trials for "
                           f"{len(entries)} of {len(needs)} undecided workload(s), "
                           f"{remaining:.0f} s of budget left", highlight=False)
        return chosen

    def _fill(self, needs: list[Undecided], records: Mapping[str, dict[str, Any]],
              remaining: float) -> tuple[list[TrialSpec], list[dict[str, Any]]]:
        """One more repetition per (undecided case, rival model), needs with the fewest
        repetitions first, while the estimate fits in ``remaining``."""
        chosen: list[TrialSpec] = []
        planned: set[tuple[str, str]] = set()
        entries = []
        for need in needs:
            unit = self._unit(need, records, planned)
            cost = sum(trial_estimate_s(t) for t in unit)
            if not unit or cost > remaining:
                continue
            remaining -= cost
            chosen.extend(unit)
            planned.update((t.case.name, t.model) for t in unit)
            entries.append({"workload": need.workload, "metric": need.metric,
                            "outcome": need.outcome, "cases": list(need.cases),
                            "models": sorted({t.model for t in unit}), "why": need.why,
                            "repetitions_before": need.repetitions})
        return chosen, entries

    def _unit(self, need: Undecided, records: Mapping[str, dict[str, Any]],
              planned: set[tuple[str, str]]) -> list[TrialSpec]:
        """The trials of one more repetition of ``need``'s cases for its rivals (skipping
        pairs another workload of this round already repeats)."""
        unit = []
        for model in [*need.models[:MAX_RIVALS], *self._references(need.models)]:
            server = self.servers.get(model)
            for name in need.cases:
                case = self.cases.get(name)
                if server is None or case is None or (name, model) in planned:
                    continue
                unit.append(TrialSpec(case=case, server=server,
                                      repeat=_next_repeat(records, name, model),
                                      ready_timeout_s=self.scenario.ready_timeout_s,
                                      stop_timeout_s=self.scenario.stop_timeout_s))
        return unit

    def _references(self, rivals: Sequence[str]) -> list[str]:
        """native's labels in this run (the reference never competes): repeated beside the
        rivals, so that their ratios to native compare figures of the same minutes."""
        return [label for label, server in self.servers.items()
                if server.model == REFERENCE and label not in rivals]

    def _stop(self, why: str) -> list[TrialSpec]:
        if self.state["stopped"] is None:
            self.state["stopped"] = why
            self._save()
            self.console.print(f"adaptive phase: {why}", highlight=False)
        return []

    def _save(self) -> None:
        self.state["spent_s"] = round(self.spent_before_s + time.monotonic() - self.started, 1)
        self.store.update_run(adaptive=self.state)


def _next_repeat(records: Mapping[str, dict[str, Any]], case: str, model: str) -> int:
    """One past the highest repetition recorded for (case, model)."""
    prefix = f"{case}--{model}--r"
    numbers = [int(tid[len(prefix):]) for tid in records
               if tid.startswith(prefix) and tid[len(prefix):].isdigit()]
    return max(numbers, default=0) + 1
