"""The workloads that tell models apart: churn, slowloris, head-of-line blocking.

Each runs against a model it does not hurt and one it does, on real servers, and asserts only
effects large enough for a noisy 2-core machine: ratios of two or more, orders of magnitude,
and structural facts (a request that waits for a whole WORK, a thread per held connection, no
reply at all). Then the scenario keys, the derived figures and one short run of the
`workloads` cases through the runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from _helpers import wait_until
from _helpers_server import ServerProcess, running_server

import servers
from bench.run import planning, scenario
from bench.run.scenario import ModelSpec
from bench.run.scenario_check import ScenarioError
from bench.run.swarm_run import swarm_arguments
from bench.run.trial import derive
from bench.run.workloads import add_reference
from bench.store import TrialSpec
from clients.__main__ import build_parser
from clients.config import SwarmConfig, SwarmError
from clients.swarm import run_swarm

REPO = Path(__file__).resolve().parent.parent
HOL_MIX = "echo:64=19,work:2000000=1"  # 5 % WORK of ~0.15 s: an ECHO behind one waits as long
RUN_START_S = 15.0  # the model listing, the machine calibration, the swarm service
REPORT_S = 30.0  # the report of a run of every model


def target(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"


def swarm(server: ServerProcess, **settings: Any) -> dict[str, Any]:
    """A short closed-loop run: 16 connections, one worker (its connections open in order)."""
    values: dict[str, Any] = {"connections": 16, "duration": 1.0, "warmup": 0.3,
                              "timeout": 2.0, "seed": 5}
    values.update(settings)
    return run_swarm(SwarmConfig(target=target(server), **values))


def server_cpu_s(server: ServerProcess) -> float:
    """CPU seconds the server (and anything it forked) has used so far."""
    root = server.process()
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def by_kind(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {kind["kind"]: kind for kind in record["latency_by_kind"]}


# ------------------------------------------------------------------ churn


def test_churn_costs_a_thread_per_connection() -> None:
    """A fresh connection per request: epoll's connection costs far less server CPU than
    threaded's (accept plus a new thread, each time); and a connection costs epoll several
    requests' worth (connections/s well under its kept-connection requests/s)."""
    runs: dict[str, tuple[dict[str, Any], float]] = {}
    for model in ("epoll", "threaded"):
        with running_server(model) as server:
            before = server_cpu_s(server)
            record = swarm(server, requests_per_connection=1)
            runs[model] = (record, server_cpu_s(server) - before)
            if model == "epoll":
                kept = swarm(server)
    for model, (record, _) in runs.items():
        churn = record["churn"]
        assert record["errors"] == {}, (model, record["errors"])
        assert churn["requests_per_connection"] == 1
        assert churn["connections_completed"] == record["requests"] > 300, model
        assert churn["connections_per_s"] == record["throughput_rps"]
        # every connection of the window was timed (those still open at its end too)
        assert abs(churn["connect_us"]["count"] - churn["connections_completed"]) <= 16
        assert churn["cycle_us"]["p50"] >= churn["connect_us"]["p50"]
        assert len(record["per_connection"]) == 16  # places, not connections
        assert record["connections_established"] == 16
    # CPU over the whole run (warm-up and drain too, about as many connections for both)
    epoll_cpu = runs["epoll"][1] / runs["epoll"][0]["requests"]
    threaded_cpu = runs["threaded"][1] / runs["threaded"][0]["requests"]
    assert threaded_cpu >= 2 * epoll_cpu, (threaded_cpu, epoll_cpu)
    assert kept["churn"] is None and kept["errors"] == {}
    assert runs["epoll"][0]["churn"]["connections_per_s"] <= 0.5 * kept["throughput_rps"]


# ------------------------------------------------------------------ slowloris


def _held_run(model: str, slow: int) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """A slowloris run, and the server's (descriptors, threads, RSS) once all are held."""
    with running_server(model) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(swarm, server, slowloris=slow, duration=1.2, warmup=0.5)
        usage = wait_until(server.usage, lambda u: u[0] >= slow + 16, timeout=15)
        return running.result(timeout=60), usage


def test_slowloris_epoll_keeps_serving_threaded_pays_a_thread_each() -> None:
    """200 half-sent frames held beside 16 busy connections: both keep serving every request;
    epoll holds them in one thread, threaded in a thread each."""
    for model in ("epoll", "threaded"):
        record, (fds, threads, _rss) = _held_run(model, 200)
        slow = record["slowloris"]
        assert record["errors"] == {}, (model, record["errors"])
        assert record["requests"] > 1000 and record["complete"], model
        assert slow["established"] == slow["alive_at_end"] == 200 and slow["errors"] == {}
        assert slow["bytes_sent"] >= 200 * slow["first_bytes"]
        assert record["connect_us"]["count"] == 216  # busy and slow connects, all timed
        assert len(record["per_connection"]) == 16  # latency: the busy ones only
        assert fds >= 216
        if model == "epoll":
            assert threads == 1
        else:
            assert threads >= 200


def test_slowloris_holds_every_thread_of_threadpool() -> None:
    """threadpool's 16 threads take the first 16 connections, the slow ones: the busy
    connections wait in its queue until they time out, and the run ends without a reply."""
    with running_server("threadpool") as server:
        started = time.monotonic()
        record = swarm(server, slowloris=32, timeout=1.0)
        elapsed = time.monotonic() - started
        assert server.usage()[1] == 17  # the pool and the accepting thread: nothing grew
    assert record["requests"] == 0 and record["totals"]["answered_ok"] == 0
    assert record["errors"] == {"timeout": 16}
    slow = record["slowloris"]
    # accepted and held to the end, never answered
    assert slow["established"] == slow["alive_at_end"] == 32 and slow["errors"] == {}
    assert elapsed < 8.0


# ------------------------------------------------------------------ head-of-line blocking


def test_head_of_line_blocking_stalls_an_event_loop_not_threads() -> None:
    """5 % WORK of ~0.15 s among ECHOs, 4 connections. In epoll an ECHO behind a WORK waits
    for all of it: the ECHOs' p99 is of the order of the WORK itself, and orders of magnitude
    over ECHO alone. In threaded the WORK is preempted every 5 ms (the GIL's switch interval):
    the ECHOs' p99 stays a small fraction of a WORK, and of epoll's (measured here: 0.08-0.14
    of a WORK, 0.13-0.20 of epoll's)."""
    with running_server("epoll") as server:
        alone = swarm(server, connections=4)
        mixed = swarm(server, connections=4, mix=HOL_MIX, timeout=5.0)
    with running_server("threaded") as server:
        threaded = swarm(server, connections=4, mix=HOL_MIX, timeout=5.0)
    assert alone["latency_by_kind"] is None  # one kind: its latency is the record's
    for record in (mixed, threaded):
        assert record["errors"] == {}
        kinds = by_kind(record)
        assert list(kinds) == ["echo:64", "work:2000000"]
        assert kinds["echo:64"]["requests"] + kinds["work:2000000"]["requests"] \
            == record["requests"]
        assert kinds["work:2000000"]["requests"] >= 2
    epoll_echo, epoll_work = (by_kind(mixed)[k]["latency_us"] for k in by_kind(mixed))
    thread_echo, thread_work = (by_kind(threaded)[k]["latency_us"] for k in by_kind(threaded))
    assert epoll_echo["p99"] >= 10 * alone["latency_us"]["p99"], (epoll_echo, alone)
    assert epoll_echo["p99"] >= 0.5 * epoll_work["p50"], (epoll_echo, epoll_work)
    assert thread_echo["p99"] <= 0.4 * thread_work["p50"], (thread_echo, thread_work)
    assert thread_echo["p99"] <= 0.5 * epoll_echo["p99"], (thread_echo, epoll_echo)


# ------------------------------------------------------------------ settings


def test_workload_settings_are_checked_and_parsed() -> None:
    for settings, words in [({"requests_per_connection": -1}, "--requests-per-connection"),
                            ({"requests_per_connection": 1, "mode": "open", "rate": 100.0},
                             "closed loop"),
                            ({"slowloris": -2}, "--slowloris"),
                            ({"slowloris_interval": 0.0}, "--slowloris-interval")]:
        with pytest.raises(SwarmError, match=words):
            run_swarm(SwarmConfig(target="127.0.0.1:1", **settings))
    parser = build_parser()
    options = parser.parse_args(["swarm", "--target", "127.0.0.1:1", "--churn",
                                 "--slowloris", "7", "--slowloris-interval", "0.5"])
    assert (options.requests_per_connection, options.slowloris,
            options.slowloris_interval) == (1, 7, 0.5)
    options = parser.parse_args(["swarm", "--target", "127.0.0.1:1",
                                 "--requests-per-connection", "3"])
    assert (options.requests_per_connection, options.slowloris) == (3, 0)
    # descriptors: the slow connections count among a worker's sockets
    assert SwarmConfig(target="x:1", connections=10, slowloris=90, workers=2
                       ).sockets_per_worker() == 50


def case_of(loaded: scenario.Scenario, name: str) -> scenario.Case:
    return next(case for case in loaded.cases if case.name == name)


def test_scenario_keys_become_cases_and_swarm_options() -> None:
    loaded = scenario.from_dict({"name": "w", "group": [
        {"name": "echo", "connections": 16},
        {"name": "churn", "connections": 16, "requests_per_connection": 1},
        {"name": "churn", "connections": 8, "requests_per_connection": 5},
        {"name": "slowloris", "connections": 16, "slowloris": 300,
         "slowloris_interval_s": 1.5, "reference": "echo64-c16-closed"},
        {"name": "hol", "label": "hol", "mix": "echo:64=99,work:200000=1",
         "connections": 16, "reference": "echo64-c16-closed"}]})
    assert [case.name for case in loaded.cases] == [
        "echo64-c16-closed", "echo64-c16-churn-closed", "echo64-c8-rpc5-closed",
        "echo64-c16-slow300-closed", "hol-c16-closed"]
    model = ModelSpec("epoll", "epoll", (), sys.executable)
    options = {case.name: swarm_arguments(TrialSpec(case, model, 1), "127.0.0.1", 1, 1,
                                          Path("x.json")) for case in loaded.cases}
    assert "--requests-per-connection" not in options["echo64-c16-closed"]
    assert "--slowloris" not in options["echo64-c16-closed"]
    churn = options["echo64-c16-churn-closed"]
    assert churn[churn.index("--requests-per-connection") + 1] == "1"
    slow = options["echo64-c16-slow300-closed"]
    assert slow[slow.index("--slowloris") + 1] == "300"
    assert slow[slow.index("--slowloris-interval") + 1] == "1.5"
    assert TrialSpec(case_of(loaded, "echo64-c16-slow300-closed"), model, 1).sockets == 316
    record = TrialSpec(case_of(loaded, "hol-c16-closed"), model, 1).as_record()
    assert record["reference_case"] == "echo64-c16-closed"
    assert record["slowloris_connections"] == 0 and record["requests_per_connection"] == 0


@pytest.mark.parametrize(("group", "message"), [
    ({"requests_per_connection": -1}, "requests_per_connection"),
    ({"requests_per_connection": 1, "mode": "open", "rates": [100]}, "closed"),
    ({"slowloris": -5}, "slowloris"),
    ({"slowloris": 10, "slowloris_interval_s": 0}, "slowloris_interval_s"),
    ({"reference": "nowhere-c1-closed"}, "reference"),
])
def test_invalid_workload_keys_say_why(group: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario.from_dict({"name": "w", "group": [{"name": "g", **group}]})


def test_a_reference_must_come_first() -> None:
    with pytest.raises(ScenarioError, match="must come earlier"):
        scenario.from_dict({"name": "w", "group": [
            {"name": "hol", "label": "hol", "mix": "echo:64=9,work:10=1",
             "reference": "echo64-c16-closed"},
            {"name": "echo", "connections": 16}]})


def test_the_workloads_scenario_fits_five_minutes_and_full_has_it() -> None:
    """Every registry model, both repetitions, the skipped ones left out with a reason; the
    estimate plus the run's start-up and its report within 5 minutes."""
    loaded = scenario.load("workloads")
    everyone = [ModelSpec(name, name, (), sys.executable) for name in servers.MODELS]
    trials = planning.plan(loaded, everyone)
    assert planning.estimate_s(trials) + RUN_START_S + REPORT_S <= 300
    cases = {case.group: case for case in loaded.cases}
    assert set(cases) == {"echo", "churn", "slowloris", "hol"}
    assert cases["churn"].requests_per_connection == 1
    assert cases["slowloris"].slowloris == 1000
    assert cases["hol"].mix == "echo:64=99,work:200000=1"
    reference = cases["echo"].name
    assert cases["slowloris"].reference == cases["hol"].reference == reference
    skipped = dict(cases["slowloris"].skip_servers)
    assert set(skipped) == {"iterative", "threadpool"}
    for name in servers.MODELS:  # a model left out of a workload is left out for a reason
        if servers.clients_at_once(name) is not None:
            assert name in skipped
    notes = planning.skip_notes(loaded, everyone)
    assert any("threadpool skipped in case echo64-c16-slow1000-closed" in n for n in notes)
    full = {case.name: case for case in scenario.load("full").cases}
    for case in loaded.cases:
        assert case.name in full, case.name
        assert full[case.name].requests_per_connection == case.requests_per_connection
        assert full[case.name].slowloris == case.slowloris
        assert full[case.name].reference == case.reference


# ------------------------------------------------------------------ derived figures


def _record(swarm_record: dict[str, Any], server: dict[str, Any] | None = None,
            **top: Any) -> dict[str, Any]:
    server = server or {"span_s": 1.0, "cpu_user_s": 0.3, "cpu_system_s": 0.2,
                        "ctx_switches": 10, "rss_max": 3000, "rss_idle": 1000}
    return {"status": "ok", "swarm": swarm_record, "server": server,
            "derived": derive(swarm_record, server, 16), **top}


def test_derived_figures_and_the_reference() -> None:
    churn = _record({"requests": 1000, "duration_s": 1.0, "throughput_rps": 1000.0,
                     "latency_us": {"p99": 300.0},
                     "churn": {"connections_completed": 1000, "connections_per_s": 1000.0,
                               "connect_us": {"p99": 120.0}}})["derived"]
    assert churn["connections_per_s"] == 1000.0 and churn["churn_connect_p99_us"] == 120.0
    assert churn["cpu_us_per_connection"] == pytest.approx(500.0)  # 0.5 CPU-s / 1,000
    plain = _record({"requests": 10, "duration_s": 1.0, "latency_us": {"p99": 90.0}})
    for key in ("connections_per_s", "slowloris_held", "reference_p99_us"):
        assert key not in plain["derived"]  # other trials' derived figures are unchanged
    slow = _record({"requests": 10, "duration_s": 1.0, "latency_us": {"p99": 150.0},
                    "slowloris": {"alive_at_end": 990, "errors_total": 10}})["derived"]
    assert (slow["slowloris_held"], slow["slowloris_errors"]) == (990, 10)

    loaded = scenario.from_dict({"name": "w", "group": [
        {"name": "echo", "connections": 16},
        {"name": "hol", "label": "hol", "mix": "echo:64=99,work:200000=1",
         "connections": 16, "reference": "echo64-c16-closed"}]})
    spec = TrialSpec(case_of(loaded, "hol-c16-closed"),
                     ModelSpec("epoll", "epoll", (), sys.executable), 2)
    reference = _record({"mix": "echo:64", "requests": 10, "duration_s": 1.0,
                         "latency_us": {"p99": 200.0}})
    hol = _record({"mix": "echo:64=99,work:200000", "requests": 10, "duration_s": 1.0,
                   "latency_us": {"p99": 30000.0},
                   "latency_by_kind": [{"kind": "echo:64", "latency_us": {"p99": 20000.0}},
                                       {"kind": "work:200000", "latency_us": {"p99": 40000.0}}]})
    add_reference(hol, spec, {"echo64-c16-closed--epoll--r1": reference})
    assert hol["reference_trial"] == "echo64-c16-closed--epoll--r1"  # r2 is missing: r1
    assert (hol["derived"]["reference_p99_us"], hol["derived"]["reference_kind_p99_us"],
            hol["derived"]["p99_ratio_to_reference"]) == (200.0, 20000.0, 100.0)
    alone = _record({"mix": "echo:64", "requests": 1, "duration_s": 1.0,
                     "latency_us": {"p99": 5.0}})
    add_reference(alone, spec, {})
    assert alone["reference_trial"] is None and alone["derived"]["reference_p99_us"] is None


# ------------------------------------------------------------------ through the runner


def test_a_short_workloads_run_records_every_figure(tmp_path: Path) -> None:
    """The scenario's four cases, shortened, on epoll through `bench run`: each trial's record
    holds its workload's figures under the names docs/results-format.md gives."""
    path = tmp_path / "w.toml"
    text = (REPO / "bench" / "scenarios" / "workloads.toml").read_text()
    text = text.replace("repeat = 2", "repeat = 1").replace("slowloris = 1000",
                                                             "slowloris = 100")
    path.write_text(text)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--scenario", str(path), "--servers", "epoll",
         "--duration", "0.3", "--warmup", "0.2", "--out", str(run_dir), "--no-report"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert sorted(records) == sorted(f"{case}--epoll--r1" for case in (
        "echo64-c16-closed", "echo64-c16-churn-closed", "echo64-c16-slow100-closed",
        "hol-c16-closed"))
    for trial_id, record in records.items():
        assert record["status"] == "ok", (trial_id, record["failure"])
    churn = records["echo64-c16-churn-closed--epoll--r1"]
    assert churn["requests_per_connection"] == 1
    assert churn["derived"]["connections_per_s"] > 0
    assert churn["derived"]["cpu_us_per_connection"] > 0
    slow = records["echo64-c16-slow100-closed--epoll--r1"]
    assert slow["slowloris_connections"] == 100 and slow["derived"]["slowloris_held"] == 100
    assert slow["server"]["fds_max"] >= 116
    hol = records["hol-c16-closed--epoll--r1"]
    assert hol["reference_trial"] == "echo64-c16-closed--epoll--r1"
    assert hol["derived"]["reference_kind_p99_us"] == by_kind(hol["swarm"])["echo:64"][
        "latency_us"]["p99"]
    assert hol["derived"]["p99_ratio_to_reference"] > 1
