"""The classics' analyses on small synthetic runs (each verdict both ways, and where it cannot
be measured), and the runner's parts they need, on a real run: a server paused inside the
window, a server given two CPUs, a case with rounds of its own."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _helpers import write_scenario
from hdrh.histogram import HdrHistogram

from bench.analysis.frames import Run
from bench.classics import (
    convoy,
    cores,
    document,
    echo_table,
    idle,
    omission,
    open_closed,
    overload,
)
from bench.classics.common import NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED
from bench.run import scenario

REPO = Path(__file__).resolve().parent.parent
RNG_SEED = 7


def run_of(rows: list[dict[str, Any]], trials: dict[str, dict[str, Any]] | None = None,
           meta: dict[str, Any] | None = None) -> Run:
    """A Run from summary rows (the frame's columns the analyses read) and trial records."""
    frame = pd.DataFrame(rows)
    for column, default in (("reason_kinds", ""), ("status", "ok"), ("server_cpu_count", 0)):
        if column not in frame:
            frame[column] = default
    if "trial_id" not in frame:
        frame["trial_id"] = [f"t{i}" for i in range(len(frame))]
    return Run(Path("."), meta or {}, trials or {}, frame)


# ---------------------------------------------------------------- idle connections


def idle_rows(slopes: dict[str, float], levels: tuple[int, ...] = (0, 250, 500, 900, 2000)
              ) -> list[dict[str, Any]]:
    """CPU µs per request = 10 + slope × idle / 1000, with a little noise, two rounds."""
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for model, slope in slopes.items():
        for level in levels:
            for repeat in (1, 2):
                cpu = 10 + slope * level / 1000 + rng.normal(0, 0.2)
                rows.append({"group": "idle", "variant": model, "repeat": repeat,
                             "idle_connections": level, "cpu_us_per_request": cpu,
                             "throughput_rps": 1e6 / cpu})
    return rows


def test_idle_select_and_poll_rise_epoll_stays_level() -> None:
    finding = idle.analyse(run_of(idle_rows({"select": 15.0, "poll": 10.0, "epoll": 0.0})))
    assert finding.verdict == REPRODUCED, finding.reason
    fitted = finding.measured["models"]["poll"]["fit"]
    assert fitted["slope_us_per_1000"] == pytest.approx(10.0, abs=0.5)
    assert fitted["slope_low"] < fitted["slope_us_per_1000"] < fitted["slope_high"]
    # a CPU-bound rate at 10,000 idle: 1 - 10 / (10 + 100) of it lost
    assert finding.measured["models"]["poll"]["reply_rate_loss_at_10000_from_fit"] == \
        pytest.approx(1 - 10 / 110, abs=0.03)
    assert set(finding.chart["series"]) == {"select", "poll", "epoll"}


def test_idle_an_epoll_that_also_rises_is_not_reproduced() -> None:
    finding = idle.analyse(run_of(idle_rows({"poll": 10.0, "epoll": 9.0})))
    assert finding.verdict == NOT_REPRODUCED and "epoll" in finding.reason


def test_idle_two_levels_give_no_slope() -> None:
    finding = idle.analyse(run_of(idle_rows({"poll": 10.0, "epoll": 0.0}, levels=(0, 900))))
    assert finding.verdict == NOT_MEASURABLE


# ---------------------------------------------------------------- the convoy


def convoy_run(echo_ms: dict[str, float], work_ms: float = 25.0) -> Run:
    rows, trials = [], {}
    for name, echo in echo_ms.items():
        model, _, cpus = name.partition("@")
        for repeat in (1, 2, 3):
            trial_id = f"convoy--{name}--r{repeat}"
            rows.append({"group": "convoy", "variant": model, "repeat": repeat,
                         "server_cpu_count": 2 if cpus else 0, "p50_us": echo * 1000,
                         "trial_id": trial_id})
            trials[trial_id] = {"swarm": {"latency_by_kind": [
                {"kind": "work:300000", "latency_us": {"p50": work_ms * 1000}},
                {"kind": "echo:64", "latency_us": {"p50": echo * 1000}}]}}
    meta = {"environment": {"interpreters": [{"switch_interval_s": 0.005}]}}
    return run_of(rows, trials, meta)


def test_convoy_threads_wait_the_switch_interval_loops_the_work() -> None:
    finding = convoy.analyse(convoy_run({"threaded": 5.2, "threadpool": 5.1, "asyncio": 25.0,
                                         "epoll": 25.0, "prefork@2cpu": 0.05}))
    assert finding.verdict == REPRODUCED, finding.reason
    assert finding.measured["switch_interval_ms"] == 5.0
    assert finding.measured["work_ms"] == 25.0
    assert finding.chart["lines"] == {"switch interval": 5.0, "WORK duration": 25.0}


def test_convoy_threads_that_do_not_wait_are_named() -> None:
    finding = convoy.analyse(convoy_run({"threaded": 0.03, "threadpool": 5.0, "asyncio": 25.0,
                                         "epoll": 25.0, "prefork@2cpu": 0.05}))
    assert finding.verdict == NOT_REPRODUCED
    assert "threaded (0.03 ms" in finding.reason and "threadpool (" not in finding.reason


def test_convoy_without_epoll_has_no_work_duration() -> None:
    finding = convoy.analyse(convoy_run({"threaded": 5.0}))
    assert finding.verdict == NOT_MEASURABLE


# ---------------------------------------------------------------- cores


def cores_rows(factors: dict[str, float], cores: dict[str, float] | None = None
               ) -> list[dict[str, Any]]:
    """Throughput on 2 CPUs = factor x on 1; CPU used on 2 CPUs: ``cores`` (else the factor)."""
    rows = []
    for model, factor in factors.items():
        used = (cores or {}).get(model, factor)
        for repeat in (1, 2, 3):
            for cpus, rate, cpu in ((1, 1000.0, 100.0),
                                    (2, 1000.0 * factor * (1 + 0.01 * repeat), 100.0 * used)):
                rows.append({"group": "cores", "variant": model, "repeat": repeat,
                             "server_cpu_count": cpus, "throughput_rps": rate,
                             "server_cpu_percent": cpu})
    return rows


def test_cores_prefork_scales_the_rest_do_not() -> None:
    finding = cores.analyse(run_of(cores_rows({"prefork": 1.9, "threaded": 1.0, "epoll": 1.02})))
    assert finding.verdict == REPRODUCED, finding.reason
    # rounds at 1.9 x 1.01, 1.02, 1.03
    assert finding.measured["models"]["prefork"]["factor"]["median"] == pytest.approx(1.94,
                                                                                     abs=0.01)
    assert "not fitted" in finding.measured["usl"]


def test_cores_a_single_loop_judged_by_the_cores_it_used_not_a_noisy_factor() -> None:
    # one core used: the 1.3x is the machine's speed between trials, not the second CPU
    finding = cores.analyse(run_of(cores_rows({"prefork": 1.8, "epoll": 1.3},
                                              {"epoll": 1.0})))
    assert finding.verdict == REPRODUCED, finding.reason
    # a second core used is scaling, whatever the factor says
    finding = cores.analyse(run_of(cores_rows({"prefork": 1.8, "epoll": 1.0},
                                              {"epoll": 1.6})))
    assert finding.verdict == NOT_REPRODUCED and "epoll" in finding.reason.split(";")[-1]


def test_cores_a_prefork_that_does_not_scale_is_not_reproduced() -> None:
    finding = cores.analyse(run_of(cores_rows({"prefork": 1.05, "threaded": 1.0})))
    assert finding.verdict == NOT_REPRODUCED and "prefork" in finding.reason.split(";")[-1]


# ---------------------------------------------------------------- the echo table


def echo_rows(rates: dict[str, float], uvloop_ratio: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for size in echo_table.SIZES:
        for repeat in range(1, 7):
            drift = rng.uniform(0.8, 1.2)  # the machine's speed that round: divides out
            for model, rate in {**rates, "uvloop": rates["asyncio"] * uvloop_ratio}.items():
                rows.append({"group": "echo-table", "variant": model, "repeat": repeat,
                             "payload_bytes": size,
                             "throughput_rps": rate * drift * rng.uniform(0.98, 1.02)})
    return rows


PUBLISHED_ORDER = {"gevent": 30000.0, "twisted": 23000.0, "tornado": 19000.0, "asyncio": 20000.0}


def test_echo_table_order_and_uvloop_as_published() -> None:
    finding = echo_table.analyse(run_of(echo_rows(PUBLISHED_ORDER, 2.5)))
    assert finding.verdict == REPRODUCED, finding.reason
    cell = finding.measured["table"]["1 KiB"]["gevent"]
    assert cell["over_tornado"]["median"] == pytest.approx(30 / 19, rel=0.05)
    assert cell["published_over_tornado"] == pytest.approx(30500 / 19900, abs=0.01)
    assert all(p["p"] <= 2 / 64 for pairs in finding.measured["orders"].values() for p in pairs)


def test_echo_table_a_slow_uvloop_and_a_reversed_order_are_named() -> None:
    rates = {**PUBLISHED_ORDER, "twisted": 15000.0}  # below tornado: reversed
    finding = echo_table.analyse(run_of(echo_rows(rates, 1.2)))
    assert finding.verdict == NOT_REPRODUCED
    assert "order reversed" in finding.reason and "uvloop below 2x" in finding.reason


# ---------------------------------------------------------------- coordinated omission


def omission_record(rate: float = 2000.0, pause_s: float = 1.4, window_s: float = 15.0,
                    in_flight: int = 100) -> dict[str, Any]:
    """What the swarm records around a pause: every request scheduled during it waits from
    its schedule to the pause's end (corrected), while only the ones already sent when it
    began see it from their send (uncorrected)."""
    rng = np.random.default_rng(RNG_SEED)
    served = rng.lognormal(math.log(800), 0.3, int(rate * (window_s - pause_s)))  # µs
    waited = (pause_s - np.arange(0, pause_s, 1 / rate)) * 1e6
    corrected, uncorrected = HdrHistogram(1, 60_000_000, 3), HdrHistogram(1, 60_000_000, 3)
    for value in np.concatenate([served, waited]):
        corrected.record_value(int(value))
    for value in np.concatenate([served, waited[:in_flight]]):
        uncorrected.record_value(int(value))

    def summary(histogram: HdrHistogram) -> dict[str, float]:
        return {"p99": float(histogram.get_value_at_percentile(99))}

    return {"trial_id": "co--epoll--r1", "rate": rate, "pause": {"at_s": 5.0, "s": pause_s},
            "swarm": {"histogram_unit": "us",
                      "histogram": corrected.encode().decode("ascii"),
                      "histogram_uncorrected": uncorrected.encode().decode("ascii"),
                      "latency_us": summary(corrected),
                      "latency_uncorrected_us": summary(uncorrected)}}


def omission_run(record: dict[str, Any]) -> Run:
    return run_of([{"group": "omission", "variant": "epoll", "repeat": 1,
                    "trial_id": record["trial_id"]}], {record["trial_id"]: record})


def test_omission_corrected_shows_the_pause_uncorrected_hides_it() -> None:
    finding = omission.analyse(omission_run(omission_record()))
    assert finding.verdict == REPRODUCED, finding.reason
    figures = finding.measured["trials"][0]
    assert figures["p99_corrected_ms"] > 700 and figures["p99_uncorrected_ms"] < 5
    # 2,800 of 30,000 requests waited; 2,520 of them more than 140 ms: the jump at p91.6
    assert figures["jump_percentile_predicted"] == pytest.approx(91.6, abs=0.1)
    assert figures["jump_percentile_measured"] == pytest.approx(91.6, abs=0.3)
    assert set(finding.chart["lines"]) == {"corrected", "uncorrected"}


def test_omission_a_short_window_lets_the_in_flight_requests_reach_the_p99() -> None:
    finding = omission.analyse(omission_run(omission_record(window_s=6.0, in_flight=150)))
    assert finding.verdict == NOT_REPRODUCED and "uncorrected p99" in finding.reason


# ---------------------------------------------------------------- overload


def overload_run(goodput_at: dict[str, dict[float, float]]) -> Run:
    rows, trials = [], {}
    for model, shares in goodput_at.items():
        capacity = 10000.0
        for repeat in (1, 2):
            trial_id = f"closed--{model}--r{repeat}"
            rows.append({"group": "overload", "variant": model, "repeat": repeat,
                         "mode": "closed", "offered_fraction": math.nan,
                         "throughput_rps": capacity, "threads_max": 65, "reason_kinds": "",
                         "trial_id": trial_id})
            for fraction, share in shares.items():
                trial_id = f"open{fraction}--{model}--r{repeat}"
                rows.append({"group": "overload", "variant": model, "repeat": repeat,
                             "mode": "open", "offered_fraction": fraction,
                             "throughput_rps": math.nan, "threads_max": 65,
                             "reason_kinds": "rate" if fraction > 1 else "",
                             "trial_id": trial_id})
                trials[trial_id] = {"swarm": {
                    "throughput_rps": capacity * share, "latency_us": {"p99": 1000 * fraction},
                    "intervals": [{"t_s": t / 2, "throughput_rps": capacity * share,
                                   "p99_us": 1000 * (1 + t * fraction)} for t in range(8)]}}
    return run_of(rows, trials)


def test_overload_threads_collapse_loops_hold() -> None:
    finding = overload.analyse(overload_run({
        "threaded": {0.5: 0.5, 1.0: 0.95, 1.5: 0.7, 2.0: 0.5},
        "epoll": {0.5: 0.5, 1.0: 0.98, 1.5: 1.0, 2.0: 1.0}}))
    assert finding.verdict == REPRODUCED, finding.reason
    assert finding.measured["models"]["threaded"]["shape"] == "collapses"
    assert finding.measured["models"]["epoll"]["loads"][2.0]["p99_growth"] == pytest.approx(15)


def test_overload_a_thread_per_connection_that_holds_says_how_many_threads() -> None:
    finding = overload.analyse(overload_run({
        "threaded": {1.0: 0.95, 2.0: 0.94}, "epoll": {1.0: 0.98, 2.0: 1.0}}))
    assert finding.verdict == NOT_REPRODUCED and "threaded ran at most 65 threads" in finding.reason


def test_overload_failed_trials_are_not_read() -> None:
    run = overload_run({"threaded": {1.0: 0.95, 2.0: 0.5}, "epoll": {1.0: 0.98, 2.0: 1.0}})
    run.frame.loc[run.frame["variant"] == "threaded", "reason_kinds"] = "failed"
    assert overload.analyse(run).verdict == NOT_MEASURABLE


# ---------------------------------------------------------------- open versus closed


def open_closed_rows(ratio: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(RNG_SEED)
    rows = []
    for model in ("threaded", "epoll", "asyncio", "prefork"):
        for repeat in (1, 2, 3):
            closed = 300 * rng.uniform(0.8, 1.2)
            rows.append({"group": "open-closed", "variant": model, "repeat": repeat,
                         "mode": "closed", "p99_us": closed, "rate": math.nan})
            rows.append({"group": "open-closed", "variant": model, "repeat": repeat,
                         "mode": "open", "p99_us": closed * ratio * rng.uniform(0.95, 1.05),
                         "rate": 5000.0})
    return rows


def test_open_loop_tail_is_longer_at_the_same_load() -> None:
    finding = open_closed.analyse(run_of(open_closed_rows(3.0)))
    assert finding.verdict == REPRODUCED, finding.reason
    assert finding.measured["pairs"] == 12 and finding.measured["p_one_sided"] < 0.001


def test_open_loop_tail_no_longer_is_not_reproduced() -> None:
    finding = open_closed.analyse(run_of(open_closed_rows(0.7)))
    assert finding.verdict == NOT_REPRODUCED


# ---------------------------------------------------------------- the document


def test_an_empty_run_has_every_experiment_not_measurable() -> None:
    content = document.document(run_of([{"group": "other", "variant": "epoll", "repeat": 1}]))
    assert content["format"] == document.FORMAT
    assert [e["name"] for e in content["experiments"]] == [m.NAME for m in document.EXPERIMENTS]
    assert all(e["verdict"] == NOT_MEASURABLE for e in content["experiments"])
    assert content["verdicts"] == {REPRODUCED: 0, NOT_REPRODUCED: 0, NOT_MEASURABLE: 7}
    for experiment in content["experiments"]:
        assert experiment["source"] and experiment["expectation"] and experiment["reason"]
    json.dumps(content)  # the file's content is JSON as it stands


def test_every_group_the_analyses_read_is_in_the_shipped_scenario() -> None:
    shipped = scenario.load("classics")
    groups = {case.group for case in shipped.cases}
    assert {module.GROUP for module in document.EXPERIMENTS} == groups


# ---------------------------------------------------------------- the runner's part, for real


def test_a_pause_two_cpus_and_rounds_of_its_own_on_a_real_run(tmp_path: Path) -> None:
    """The server is stopped inside the window (the corrected tail shows it, the record says
    when), a case with server_cpu_count 2 runs its server on two CPUs, and a case with
    rounds = 2 runs twice in a run of one repeat; then the classics analyse the folder."""
    path = write_scenario(tmp_path, """
        name = "mini"
        repeat = 1
        warmup_s = 0.3
        timeout_s = 3.0
        [[group]]
        name = "omission"
        label = "co"
        connections = [10]
        mode = "open"
        rates = [500]
        duration_s = 2.0
        pause_at_s = 0.5
        pause_s = 0.6
        [[group]]
        name = "cores"
        label = "cores"
        mix = "work:2000"
        connections = [2]
        duration_s = 0.4
        server_cpu_count = [2]
        rounds = 2
    """)
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--scenario", str(path),
                           "--servers", "epoll", "--out", str(run_dir), "--no-report"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert sorted(records) == ["co-c10-pause0.6s-open-r500--epoll--r1",
                               "cores-c2-cpu2-closed--epoll--r1", "cores-c2-cpu2-closed--epoll--r2"]
    paused = records["co-c10-pause0.6s-open-r500--epoll--r1"]
    assert paused["status"] == "ok", paused["failure"]
    assert paused["pause"]["s"] == pytest.approx(0.6, abs=0.1)
    assert paused["pause"]["at_s"] == pytest.approx(0.5, abs=0.1)
    assert paused["swarm"]["latency_us"]["max"] > 400_000  # a request waited out the pause
    two = records["cores-c2-cpu2-closed--epoll--r1"]
    assert two["server_cpus"] == sorted(os.sched_getaffinity(0))[:2]
    assert two["server_cpu_count"] == 2 and two["case_rounds"] == 2
    analysed = subprocess.run([sys.executable, "-m", "bench", "classics", str(run_dir)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert analysed.returncode == 0, analysed.stdout + analysed.stderr
    content = json.loads((run_dir / "classics.json").read_text())
    found = {e["name"]: e for e in content["experiments"]}
    assert found["omission"]["measured"]["trials"][0]["pause_s"] == pytest.approx(0.6, abs=0.1)
    assert found["idle"]["verdict"] == NOT_MEASURABLE
    assert "omission" in analysed.stdout
