"""The swarm self-check: the verdict logic, a short real run, and Ctrl-C reaping every child."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _helpers import sigint_at_default

from bench import cli, procs
from bench.selfcheck import swarm_speed
from servers import native

REPO_ROOT = Path(__file__).resolve().parents[1]
needs_native = pytest.mark.skipif(native.unavailable() is not None,
                                  reason=f"native model unavailable: {native.unavailable()}")


def new_children() -> list[psutil.Process]:
    """Live descendants of this test process, less multiprocessing's resource tracker, which
    an earlier in-process swarm run (tests/test_swarm.py) leaves for the process's lifetime."""
    return [proc for proc in psutil.Process().children(recursive=True)
            if "multiprocessing.resource_tracker" not in " ".join(proc.cmdline())]



def _run(rps: float, cpu: float = 50.0, server_cpu: float = 50.0, others: float = 0.0,
         saturated: bool = False) -> dict[str, object]:
    return {"throughput_rps": rps, "client_cpu_percent": cpu, "server_cpu_percent": server_cpu,
            "client_saturated": saturated, "server_core_others_percent": others,
            "client_core_others_percent": 0.0}


def test_rounds_summary_takes_the_median_ratio() -> None:
    rounds = [{"round": i + 1, "native": _run(100.0), "swarm": _run(rps), "ratio": rps / 100}
              for i, rps in enumerate([80.0, 90.0, 86.0])]
    summary = swarm_speed.summarize_rounds(rounds, 0.85)
    assert summary["ratio_median"] == pytest.approx(0.86)
    assert summary["goal_met"] is True
    assert (summary["ratio_min"], summary["ratio_max"]) == (0.8, 0.9)
    assert swarm_speed.summarize_rounds(rounds[:1], 0.85)["goal_met"] is False
    alone = swarm_speed.summarize_rounds([{"round": 1, "native": _run(1.0)}], 0.85)
    assert alone["goal_met"] is None and alone["ratio_median"] is None


@pytest.mark.parametrize(("swarm", "reference", "ok", "word"), [
    (_run(10.0, cpu=95.0, server_cpu=99.0), None, False, "saturated"),
    (_run(10.0, cpu=50.0, saturated=True), None, False, "saturated"),
    (_run(10.0, cpu=40.0, server_cpu=97.0), None, True, "server saturated"),
    (_run(90.0, cpu=40.0, server_cpu=50.0), _run(100.0), True, "keeps up"),
    (_run(50.0, cpu=40.0, server_cpu=50.0, others=60.0), _run(100.0), True, "shared"),
    (_run(50.0, cpu=40.0, server_cpu=50.0), _run(100.0), True, "neither saturated"),
])
def test_bottleneck_verdict(swarm: dict[str, object], reference: dict[str, object] | None,
                            ok: bool, word: str) -> None:
    verdict, passed = swarm_speed.bottleneck_verdict(swarm, reference, 0.85)
    assert passed is ok
    assert word in verdict


def test_core_task_share_leaves_out_interrupts() -> None:
    times = type(psutil.cpu_times(percpu=True)[0])
    zero = dict.fromkeys(times._fields, 0.0)
    before = [times(**zero)]
    after = [times(**{**zero, "user": 30.0, "system": 10.0, "softirq": 20.0, "idle": 40.0})]
    assert swarm_speed.core_task_percent(before, after) == [pytest.approx(40.0)]


def test_one_client_at_a_time_models_are_skipped() -> None:
    registry = swarm_speed.servers
    assert registry.clients_at_once("iterative") == 1  # always in the registry: no condition
    assert "every connection" in (swarm_speed.skip_reason("iterative") or "")
    assert registry.clients_at_once("epoll") is None
    assert swarm_speed.skip_reason("epoll") is None
    for name in registry.available_models():  # skipped exactly where a bound is declared
        assert (swarm_speed.skip_reason(name) is None) == (registry.clients_at_once(name) is None)


@pytest.mark.slow
@needs_native
def test_short_run_writes_a_record_and_leaves_no_child(tmp_path: Path) -> None:
    if problem := swarm_speed.swarm_problem():
        pytest.skip(f"python -m clients swarm cannot run here: {problem}")
    path = tmp_path / "result.json"
    status = cli.main(["swarm-check", "--rounds", "1", "--duration", "0.5", "--warmup", "0.2",
                               "--models", "epoll", "--json", str(path)])
    assert status in (0, 1)  # the goal itself depends on this busy machine
    record = json.loads(path.read_text())
    round_one = record["native"]["rounds"][0]
    assert round_one["native"]["throughput_rps"] > 0
    assert round_one["swarm"]["throughput_rps"] > 0
    assert round_one["ratio"] == pytest.approx(
        round_one["swarm"]["throughput_rps"] / round_one["native"]["throughput_rps"])
    assert record["goal_met"] == (record["native"]["ratio_median"] >= 0.85)
    (epoll,) = record["models"]
    assert epoll["model"] == "epoll" and "verdict" in epoll
    assert procs.live_children() == []
    assert new_children() == []


@pytest.mark.slow
@needs_native
def test_ctrl_c_stops_and_reaps_every_child(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bench", "swarm-check", "--rounds", "3",
                             "--duration", "5", "--json", str(tmp_path / "r.json")],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=sigint_at_default)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(descendants) < 2:  # a server and a client
            time.sleep(0.2)
            descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 2, "the benchmark started no server and client"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    _gone, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == []
    assert not (tmp_path / "r.json").exists()


def test_missing_compiler_is_a_clear_message(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def no_compiler() -> Path:
        raise native.BuildError("no C compiler found (set $CC, or install cc, gcc or clang)")

    monkeypatch.setattr(native, "build_server", no_compiler)
    assert cli.main(["swarm-check", "--models", "none"]) == 2
    assert "cannot build the native reference" in capsys.readouterr().err
    assert procs.live_children() == []


@pytest.mark.slow
@needs_native
def test_without_the_swarm_the_native_client_runs_alone(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_speed, "swarm_problem", lambda: "not installed")
    path = tmp_path / "result.json"
    status = cli.main(["swarm-check", "--rounds", "1", "--duration", "0.3", "--warmup", "0.1",
                               "--json", str(path)])
    assert status == 2  # the goal could not be measured
    record = json.loads(path.read_text())
    assert record["swarm_problem"] == "not installed" and record["goal_met"] is None
    (only,) = record["native"]["rounds"]
    assert only["native"]["throughput_rps"] > 0 and "swarm" not in only
    assert new_children() == []
