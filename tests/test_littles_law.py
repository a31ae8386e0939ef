"""Little's law on every closed-loop trial: throughput × mean latency ÷ requests in flight is 1.

A fabricated record (tests/_helpers_report.py's ``make_trial``) whose figures keep the law stands;
the same trial with its client slowed (the latency samples cover 30 % less time than the
window: the client lost it) is flagged ¶ with the reason and its throughput and latency are
left out, its server figures kept. Then a real swarm on the epoll model, once as it is (the law
holds within 5 %) and once with the whole swarm (parent and workers, its own process group)
frozen with SIGSTOP across the measured window's end and resumed with SIGCONT: the replies
held back are read after the window closed, so the samples no longer tile the window and the
trial is flagged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from _helpers_report import make_trial
from _helpers_server import running_server

from bench.analysis import validity
from bench.analysis.frames import summary_frame

ROOT = Path(__file__).resolve().parent.parent


def lawful(ratio: float) -> dict[str, Any]:
    """A closed-loop trial of 16 connections whose mean latency makes the law's ratio ``ratio``."""
    record = make_trial("echo64-c16-closed", "echo", "epoll", 0, 16, 40_000.0)
    swarm = record["swarm"]
    swarm["pipeline"] = 1
    swarm["latency_us"]["mean"] = ratio * 16 / 40_000.0 * 1e6
    record["derived"]["mean_us"] = swarm["latency_us"]["mean"]
    return record


def test_a_lawful_trial_stands() -> None:
    verdict = validity.judge(lawful(1.02))
    assert verdict.littles_law_ratio == pytest.approx(1.02)
    assert not verdict.littles_law_broken
    assert verdict.valid("throughput_rps") and verdict.valid("p99_us")
    assert validity.MARK_LITTLE not in verdict.flags


@pytest.mark.parametrize("ratio", [0.7, 1.3])
def test_a_slowed_client_is_flagged(ratio: float) -> None:
    verdict = validity.judge(lawful(ratio))
    assert verdict.littles_law_broken
    assert verdict.flags == validity.MARK_LITTLE
    assert not verdict.valid("throughput_rps") and not verdict.valid("p50_us")
    assert verdict.valid("cpu_us_per_request")  # the server's figures stand
    assert "Little's law broken" in verdict.reason and f"{ratio:.3f}" in verdict.reason
    row = summary_frame([lawful(ratio)]).iloc[0]
    assert bool(row["littles_law_broken"]) and row["littles_law_ratio"] == pytest.approx(ratio)
    assert not row["ok_throughput_rps"]


def test_the_runners_figure_wins_and_open_loop_is_not_judged() -> None:
    record = lawful(1.0)
    record["derived"]["littles_law_ratio"] = 0.5
    assert validity.judge(record).littles_law_broken
    opened = lawful(0.5)
    opened["swarm"]["mode"] = "open"
    assert validity.littles_law_ratio(opened["swarm"]) is None
    del opened["swarm"]["pipeline"]  # records that do not state it are not judged by it
    opened["swarm"]["mode"] = "closed"
    assert validity.littles_law(opened) is None


# ------------------------------------------------------------------ a real swarm, slowed


def swarm(target: str, out: Path, freeze: tuple[float, float] | None = None) -> dict[str, Any]:
    """Run ``python -m clients swarm`` (1 s window after 0.5 s warm-up); with ``freeze``, stop
    its process group from ``freeze[0]`` s after its workers exist for ``freeze[1]`` s."""
    argv = [sys.executable, "-m", "clients", "swarm", "--target", target, "--connections", "4",
            "--duration", "1.0", "--warmup", "0.5", "--timeout", "10", "--quiet",
            "--json", str(out)]
    child = subprocess.Popen(argv, cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if freeze is not None:
            parent = psutil.Process(child.pid)
            deadline = time.monotonic() + 30
            while not parent.children() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(freeze[0])
            os.killpg(child.pid, signal.SIGSTOP)
            time.sleep(freeze[1])
            os.killpg(child.pid, signal.SIGCONT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()
    assert out.exists(), stderr.decode()
    return json.loads(out.read_text())


def test_a_real_swarm_keeps_the_law_and_breaks_it_when_frozen(tmp_path: Path) -> None:
    with running_server("epoll") as server:
        target = f"{server.host}:{server.port}"
        steady = swarm(target, tmp_path / "steady.json")
        # the window ends ~1.5 s after the workers start (plus connecting and, on a busy
        # machine, slow start-up): frozen 1.0-3.0 s, so the window's end falls in the freeze
        frozen = swarm(target, tmp_path / "frozen.json", freeze=(1.0, 2.0))
    ratio = validity.littles_law_ratio(steady)
    assert ratio is not None and abs(ratio - 1) <= validity.LITTLE_TOLERANCE, (
        ratio, steady["latency_us"], steady["throughput_rps"], steady["errors"])
    broken = validity.littles_law_ratio(frozen)
    assert broken is not None and abs(broken - 1) > validity.LITTLE_TOLERANCE, (
        broken, frozen["latency_us"], frozen["throughput_rps"])


def test_an_open_loop_trial_whose_client_lag_passes_its_share_of_the_slo_keeps_only_its_throughput(
) -> None:
    """The client's own lag p99 over LAG_SLO_SHARE of the case's SLO: the latency would be the
    client's pauses, so it is left out (°); the throughput and the server's figures stand. The
    bound is the SLO's, not the trial's own tail: a slow server cannot make a lagging client's
    trial count (the rule that compared the lag with the server's tail kept the slowest)."""
    record = make_trial("echo64-c16-open-equal", "equal", "epoll", 0, 16, 40_000.0,
                        mode="open", rate=40_000.0)
    record["slo_p99_ms"] = 2.0
    record["swarm"]["requests"] = 20_000
    record["swarm"]["client"]["lag_us"] = {"p99": 100.0}
    assert validity.judge(record).valid("p99_us")
    record["swarm"]["latency_us"]["p99"] = 50_000.0  # a slow server does not change the rule
    record["swarm"]["client"]["lag_us"] = {"p99": 4_000.0}
    verdict = validity.judge(record)
    assert verdict.client_lagged and verdict.flags == validity.MARK_LAG
    assert not verdict.valid("p99_us") and not verdict.valid("p50_us")
    assert verdict.valid("throughput_rps") and verdict.valid("cpu_us_per_request")
    assert "4,000 µs is over 25% of the 2 ms SLO" in verdict.reason
    row = summary_frame([record]).iloc[0]
    assert bool(row["client_lagged"]) and not bool(row["ok_p99_us"])
