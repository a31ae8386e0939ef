"""The adaptive phase: which workloads the answer cannot decide yet, and the extra repetitions
spent on them within the budget (bench/analysis/adaptive.py, bench/run/adaptive.py). Records
are synthetic, made by the runner's own record code, so the verdicts are the report's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.analysis.adaptive import undecided
from bench.environment import Placement
from bench.run import adaptive, scenario
from bench.run.runner import TrialContext, base_record, derive
from bench.store import RunStore, TrialSpec

CONTEXT = TrialContext(placement=Placement("split", (0,), (1,)), work_dir=Path("unused"),
                       run_id="synthetic")


def loaded(repeat: int = 2, budget_s: float = 60.0) -> scenario.Scenario:
    return scenario.from_dict({"name": "t", "repeat": repeat, "budget_s": budget_s, "seed": 3,
                               "duration_s": 0.3, "warmup_s": 0.1, "group": [
                                   {"name": "echo", "connections": 16},
                                   {"name": "cpu", "mix": "work:2000", "connections": 16}]})


def plan(scenario_: scenario.Scenario, *labels: str) -> list[TrialSpec]:
    return scenario.plan(scenario_, [scenario.ModelSpec(m, m, (), "py") for m in labels])


def record(spec: TrialSpec, throughput: float) -> dict[str, Any]:
    """A successful trial record of ``throughput`` req/s (and 10 µs of CPU per request)."""
    requests = int(throughput * spec.case.duration_s)
    swarm = {"mode": spec.case.mode, "connections": spec.case.connections,
             "requests": requests, "duration_s": spec.case.duration_s,
             "throughput_rps": throughput, "errors": {},
             "latency_us": {"p50": 100.0, "p90": 150.0, "p99": 300.0, "p99_9": 500.0,
                            "max": 900.0, "mean": 110.0},
             "client": {"cpu_percent": [50.0], "saturated": False}}
    server = {"span_s": spec.case.duration_s, "cpu_user_s": requests * 8e-6,
              "cpu_system_s": requests * 2e-6, "cpu_percent": 50.0, "ctx_switches": requests,
              "rss_idle": 1_000_000, "rss_max": 2_000_000, "threads_max": 1, "fds_max": 20}
    rec = base_record(spec, CONTEXT)
    rec.update(status="ok", wall_s=1.0, swarm=swarm, server=server,
               derived=derive(swarm, server, spec.sockets))
    return rec


FIGURES = {  # (case, model) -> throughput per repetition
    ("echo64-c16-closed", "epoll"): [30_000, 34_000],
    ("echo64-c16-closed", "asyncio"): [30_500, 33_000],  # inside epoll's interval: a tie
    ("echo64-c16-closed", "threaded"): [12_000, 12_500],
    ("work2000-c16-closed", "epoll"): [2_000, 2_010],
    ("work2000-c16-closed", "asyncio"): [1_000, 1_005],  # clearly apart
    ("work2000-c16-closed", "threaded"): [900, 905],
}


def records_for(trials: list[TrialSpec], figures: dict = FIGURES) -> dict[str, dict]:
    return {t.trial_id: record(t, figures[(t.case.name, t.model)][t.repeat - 1])
            for t in trials}


def test_undecided_names_the_tied_workload_and_its_rivals() -> None:
    trials = plan(loaded(), "epoll", "asyncio", "threaded")
    needs = undecided(records_for(trials))
    tied = [n for n in needs if n.cases == ("echo64-c16-closed",) and n.metric == "throughput_rps"]
    assert len(tied) == 1
    need = tied[0]
    assert need.outcome == "tie" and set(need.models) == {"epoll", "asyncio"}
    assert need.repetitions == 2 and "interval" in need.why
    assert not [n for n in needs if n.cases == ("work2000-c16-closed",)
                and n.metric == "throughput_rps"]


def test_a_tie_inside_the_minimum_effect_is_decided_enough() -> None:
    """Two models within a few percent of each other, the interval too: equal for the answer's
    purpose (under the 5 % minimum effect), so no repetition is spent on them."""
    trials = plan(loaded(), "epoll", "asyncio")
    close = {**FIGURES, ("echo64-c16-closed", "epoll"): [30_000, 31_000],
             ("echo64-c16-closed", "asyncio"): [30_500, 29_800]}
    assert not [n for n in undecided(records_for(trials, close))
                if n.cases == ("echo64-c16-closed",) and n.metric == "throughput_rps"]


def test_one_repetition_is_unconfirmed() -> None:
    trials = plan(loaded(repeat=1), "epoll", "threaded")
    needs = undecided(records_for(trials))
    assert needs and all(n.outcome == "unconfirmed" for n in needs)
    assert all(n.models[0] == "epoll" and "threaded" in n.models for n in needs
               if n.metric == "throughput_rps")


def phase(tmp_path: Path, scenario_: scenario.Scenario, trials: list[TrialSpec],
          budget_s: float) -> tuple[adaptive.AdaptivePhase, RunStore]:
    store = RunStore.create(tmp_path / "run")
    store.write_run({"format": 1, "run_id": "t", "plan": [t.trial_id for t in trials]})
    return adaptive.AdaptivePhase(store, scenario_, trials, budget_s, time.monotonic(),
                                  Console(quiet=True)), store


def test_a_round_repeats_the_tied_case_for_its_rivals_and_is_recorded(tmp_path: Path) -> None:
    scenario_ = loaded()
    trials = plan(scenario_, "epoll", "asyncio", "threaded")
    extra, store = phase(tmp_path, scenario_, trials, budget_s=60)
    records = records_for(trials)
    batch = extra(records)
    ids = {t.trial_id for t in batch}
    assert {"echo64-c16-closed--epoll--r3", "echo64-c16-closed--asyncio--r3"} <= ids
    assert not any("threaded" in i and i.startswith("echo64-c16") for i in ids)
    assert all(t.repeat == 3 for t in batch)
    state = store.read_run()["adaptive"]
    assert state["seed"] == 3 and state["budget_s"] == 60 and state["extra_trials"] == len(batch)
    entry = next(w for w in state["rounds"][0]["workloads"]
                 if w["cases"] == ["echo64-c16-closed"])
    assert entry["outcome"] == "tie" and set(entry["models"]) == {"epoll", "asyncio"}
    assert "interval" in entry["why"] and entry["repetitions_before"] == 2
    # the same records give the same round (seeded order)
    again, _ = phase(tmp_path / "again", scenario_, trials, budget_s=60)
    assert [t.trial_id for t in again(records)] == [t.trial_id for t in batch]


def test_native_is_repeated_beside_the_rivals(tmp_path: Path) -> None:
    scenario_ = loaded()
    trials = plan(scenario_, "epoll", "asyncio", "threaded", "native")
    figures = {**FIGURES, ("echo64-c16-closed", "native"): [90_000, 95_000],
               ("work2000-c16-closed", "native"): [20_000, 21_000]}
    extra, _ = phase(tmp_path, scenario_, trials, budget_s=60)
    ids = {t.trial_id for t in extra(records_for(trials, figures))}
    assert {"echo64-c16-closed--epoll--r3", "echo64-c16-closed--asyncio--r3",
            "echo64-c16-closed--native--r3"} <= ids


def test_the_phase_stops_when_decided_or_out_of_budget(tmp_path: Path) -> None:
    scenario_ = loaded()
    trials = plan(scenario_, "epoll", "threaded")
    decided = {key: value for key, value in FIGURES.items() if key[1] != "asyncio"}
    extra, store = phase(tmp_path, scenario_, trials, budget_s=60)
    assert extra(records_for(trials, decided)) == []
    assert store.read_run()["adaptive"]["stopped"] == "every workload decided"

    tied = plan(scenario_, "epoll", "asyncio", "threaded")
    poor, store = phase(tmp_path / "poor", scenario_, tied, budget_s=0.5)
    assert poor(records_for(tied)) == []
    assert store.read_run()["adaptive"]["stopped"].startswith("budget spent")


@pytest.mark.parametrize("records", [{}, None])
def test_nothing_to_decide_without_records(records: dict | None) -> None:
    assert undecided(records or {}) == []


def test_a_resumed_phase_goes_on_from_its_recorded_rounds(tmp_path: Path) -> None:
    scenario_ = loaded()
    trials = plan(scenario_, "epoll", "asyncio", "threaded")
    extra, store = phase(tmp_path, scenario_, trials, budget_s=60)
    records = records_for(trials)
    first = extra(records)
    resumed = adaptive.AdaptivePhase(store, scenario_, trials, 60, time.monotonic(),
                                     Console(quiet=True), spent_before_s=5.0)
    again = resumed({**records, **{t.trial_id: record(t, 31_000) for t in first}})
    state = store.read_run()["adaptive"]
    assert [r["round"] for r in state["rounds"]] == [1, 2]
    assert state["extra_trials"] == len(first) + len(again)
    assert all(t.repeat == 4 for t in again if t.case.name == "echo64-c16-closed")
