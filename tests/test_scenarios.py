"""Scenario files: validation, expansion into cases, and the plan's order (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

import servers
from bench.run import planning, scenario
from bench.run.scenario import ModelSpec
from bench.run.scenario_check import ScenarioError

# every model in the registry: a scenario that names none runs all of them
ALL_MODELS = list(servers.MODELS)


def models(*labels: str, interpreter: str = "python3") -> list[ModelSpec]:
    return [ModelSpec(label, label, (), interpreter) for label in labels]


def make(groups: list[dict], **top: object) -> scenario.Scenario:
    return scenario.from_dict({"name": "t", **top, "group": groups})


def names(loaded: scenario.Scenario) -> list[str]:
    return [case.name for case in loaded.cases]


def test_shipped_scenarios_load() -> None:
    assert {"quick", "default", "full"} <= set(scenario.scenario_names())
    for name in scenario.scenario_names():
        loaded = scenario.load(name)
        assert loaded.cases and loaded.description


def test_default_covers_every_connection_count_and_workload() -> None:
    loaded = scenario.load("default")
    cases = {case.name: case for case in loaded.cases}
    for conns in (1, 16, 1000):
        assert f"echo64-c{conns}-closed" in cases
    assert any(c.mix.startswith("work:") for c in cases.values())
    assert "sleep10ms-c128-closed" in cases
    equal = [c for c in cases.values() if c.equal_load]
    assert [c.name for c in equal] == ["echo64-c16-open-equal"]
    assert equal[0].base == "echo64-c16-closed" and equal[0].fraction is None
    # every window waits for steady state; the equal-load one, whose p99 is ranked, is sized
    # for 100 samples beyond it; nine rounds let the paired test call a verdict clear
    assert all(c.steady for c in cases.values())
    assert equal[0].min_requests >= 10_000
    assert loaded.repeat >= 9


def test_full_adds_repetitions_payloads_and_a_wider_sweep() -> None:
    full, default = scenario.load("full"), scenario.load("default")
    assert full.repeat >= 3
    assert max(c.payload_bytes or 0 for c in full.cases) == 64 * 1024
    assert (sum(c.mode == "open" for c in full.cases)
            > sum(c.mode == "open" for c in default.cases))


@pytest.mark.parametrize(("name", "budget_s"), [("quick", 60), ("default", 600)])
def test_time_budget_with_its_models(name: str, budget_s: float) -> None:
    """Trials x (measured + warm-up + the overhead measured per trial) within the scenario's
    budget (quick: 1 minute, default: 10 minutes), for the models it names (every model in the
    registry where it names none); run start-up and the report take the rest."""
    loaded = scenario.load(name)
    trials = planning.plan(loaded, models(*(loaded.servers or ALL_MODELS)))
    assert {t.repeat for t in trials} == set(range(1, loaded.repeat + 1))
    assert planning.estimate_s(trials) < budget_s * 0.9


def test_equal_load_groups() -> None:
    loaded = make([{"name": "echo", "connections": 8},
                   {"name": "equal", "mode": "open", "connections": 8, "equal_load": 0.5,
                    "base": "echo64-c8-closed"}])
    equal = loaded.cases[-1]
    assert equal.name == "echo64-c8-open-equal" and equal.mode == "open"
    assert (equal.equal_load, equal.base, equal.rate, equal.fraction) == \
        (0.5, "echo64-c8-closed", None, None)
    assert planning.plan(loaded, models("a"))[-1].as_record()["equal_load_share"] == 0.5
    with pytest.raises(ScenarioError, match="equal_load needs base"):
        make([{"name": "e", "mode": "open", "equal_load": 0.5}])
    with pytest.raises(ScenarioError, match="exactly one of rates"):
        make([{"name": "echo"}, {"name": "e", "mode": "open", "equal_load": 0.5,
                                 "fractions": [0.5], "base": "echo64-c16-closed"}])
    with pytest.raises(ScenarioError, match="share of the slowest"):
        make([{"name": "echo"}, {"name": "e", "mode": "open", "equal_load": 2,
                                 "base": "echo64-c16-closed"}])
    with pytest.raises(ScenarioError, match="need mode"):
        make([{"name": "e", "equal_load": 0.5}])
    with pytest.raises(ScenarioError, match="not a closed-loop case"):
        make([{"name": "e", "mode": "open", "equal_load": 0.5, "base": "nope"}])


def test_axes_expand_to_every_combination_in_order() -> None:
    loaded = make([{"name": "echo", "mix": "echo:{payload}", "payload_bytes": [64, 1024],
                    "connections": [1, 16], "pipeline": [1, 4]}])
    assert names(loaded) == [
        "echo64-c1-closed", "echo64-c1-p4-closed", "echo64-c16-closed", "echo64-c16-p4-closed",
        "echo1k-c1-closed", "echo1k-c1-p4-closed", "echo1k-c16-closed", "echo1k-c16-p4-closed"]
    assert [c.payload_bytes for c in loaded.cases][::4] == [64, 64, 1024, 1024][::2]


def test_labels_of_mixes() -> None:
    assert scenario.mix_label("echo:65536") == "echo64k"
    assert scenario.mix_label("sleep:10000") == "sleep10ms"
    assert scenario.mix_label("sleep:250") == "sleep250us"
    assert scenario.mix_label("echo:64=3,work:100") == "echo64+work100"


def test_open_loop_rates_and_fractions() -> None:
    loaded = make([
        {"name": "rates", "mode": "open", "rates": [1000, 2500.5], "connections": 8},
        {"name": "sweep", "label": "sweep", "mode": "open", "fractions": [0.25, 1.1],
         "connections": 8},
    ], slo_p99_ms=2)
    assert names(loaded) == ["echo64-c8-open-r1000", "echo64-c8-open-r2500.5",
                             "sweep-c8-closed", "sweep-c8-open-r25pct", "sweep-c8-open-r110pct"]
    sweep = loaded.cases[-1]
    assert (sweep.base, sweep.fraction, sweep.rate, sweep.slo_p99_ms) == \
        ("sweep-c8-closed", 1.1, None, 2.0)
    assert loaded.cases[0].rate == 1000.0


def test_sweep_base_named_elsewhere_must_come_first() -> None:
    echo = {"name": "echo", "connections": 16}
    sweep = {"name": "sweep", "label": "sweep", "mode": "open", "fractions": [0.5],
             "base": "echo64-c16-closed", "connections": 16}
    assert names(make([echo, sweep]))[-1] == "sweep-c16-open-r50pct"
    with pytest.raises(ScenarioError, match="must come earlier"):
        make([sweep, echo])
    with pytest.raises(ScenarioError, match="not a closed-loop case"):
        make([{**sweep, "base": "nope"}])


@pytest.mark.parametrize(("groups", "top", "message"), [
    ([{"name": "g", "conections": 4}], {}, "unknown key.*conections"),
    ([{"name": "g"}], {"duraton_s": 1}, "unknown key.*duraton_s"),
    ([{"name": "g", "mix": "echo:64,dance:3"}], {}, "unknown operation"),
    ([{"name": "g", "mix": "work:99999999999"}], {}, "between 0 and"),
    ([{"name": "g", "mode": "open"}], {}, "exactly one of rates"),
    ([{"name": "g", "rates": [10]}], {}, "need mode"),
    ([{"name": "g", "mode": "open", "fractions": [0.5, -1]}], {}, "positive"),
    ([{"name": "g", "connections": 0}], {}, "at least 1"),
    ([{"name": "g", "duration_s": "long"}], {}, "not a int or float"),
    ([{"name": "g", "payload_bytes": [10]}], {}, "needs \\{payload\\}"),
    ([{"name": "g"}, {"name": "h", "duration_s": 9}], {}, "both named"),
    ([{"name": "bad name"}], {}, "not a name"),
    ([], {}, "at least one"),
    ([{"name": "g"}], {"placement": "far"}, "not one of"),
    ([{"name": "g"}], {"variants": {"e2": {"args": []}}}, "needs model"),
])
def test_invalid_scenarios_say_why(groups: list[dict], top: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        make(groups, **top)


def test_unknown_scenario_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'.*quick"):
        scenario.load("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        scenario.load(str(bad))


def test_overrides_replace_group_settings() -> None:
    data = {"name": "t", "duration_s": 5, "group": [{"name": "g", "duration_s": 7}]}
    loaded = scenario.from_dict(scenario.apply_overrides(data, {"duration_s": 0.5,
                                                                "repeat": 2,
                                                                "warmup_s": None}))
    assert loaded.cases[0].duration_s == 0.5 and loaded.repeat == 2
    assert loaded.cases[0].warmup_s == scenario.TOP_DEFAULTS["warmup_s"]


def test_plan_interleaves_repetitions_and_rotates_models() -> None:
    loaded = make([{"name": "g", "connections": [1, 2]}], repeat=2)
    trials = planning.plan(loaded, models("a", "b", "c"))
    assert [t.trial_id for t in trials] == [
        "echo64-c1-closed--a--r1", "echo64-c1-closed--b--r1", "echo64-c1-closed--c--r1",
        "echo64-c2-closed--a--r1", "echo64-c2-closed--b--r1", "echo64-c2-closed--c--r1",
        "echo64-c1-closed--b--r2", "echo64-c1-closed--c--r2", "echo64-c1-closed--a--r2",
        "echo64-c2-closed--b--r2", "echo64-c2-closed--c--r2", "echo64-c2-closed--a--r2"]
    assert len({t.trial_id for t in trials}) == len(trials)


def test_variants_model_args_interpreters_and_group_servers() -> None:
    loaded = make([{"name": "g"}, {"name": "h", "connections": 2, "servers": ["epoll"]}],
                  servers=["epoll", "epoll-edge", "threaded"],
                  variants={"epoll-edge": {"model": "epoll", "args": ["--trigger", "edge"]}},
                  model_args={"threaded": ["--stack", "64"]})
    available = {"/py/a": ["epoll", "threaded"], "/py/b": ["epoll"]}
    specs, notes = planning.resolve_models(loaded, available, [("/py/a", "a"), ("/py/b", "b")])
    assert [s.label for s in specs] == ["epoll@a", "epoll@b", "epoll-edge@a", "epoll-edge@b",
                                        "threaded@a"]
    assert specs[2].model == "epoll" and specs[2].args == ("--trigger", "edge")
    assert specs[4].args == ("--stack", "64")
    assert notes == ["model threaded skipped under /py/b: threaded is not available"]
    trials = planning.plan(loaded, specs)
    restricted = [t.model for t in trials if t.case.name == "echo64-c2-closed"]
    assert restricted == ["epoll@a", "epoll@b", "epoll-edge@a", "epoll-edge@b"]
    assert trials[0].server.interpreter == "/py/a" and trials[1].server.interpreter == "/py/b"


def test_default_models_are_the_available_ones() -> None:
    loaded = make([{"name": "g"}])
    specs, notes = planning.resolve_models(loaded, {"py": ["x", "y"]}, [("py", None)])
    assert [s.label for s in specs] == ["x", "y"] and not notes
    only, _ = planning.resolve_models(loaded, {"py": ["x", "y"]}, [("py", None)], ["y"])
    assert [s.label for s in only] == ["y"]


def test_resolved_scenario_round_trips() -> None:
    loaded = scenario.load("default")
    again = scenario.from_dict(loaded.to_dict()["data"], source=loaded.source)
    some = models("epoll", "threaded")
    assert [t.trial_id for t in planning.plan(again, some)] == \
        [t.trial_id for t in planning.plan(loaded, some)]
