"""C10K: the swarm's idle connections, the c10k scenario, and a scaled-down c10k run.

The real scenario holds 10,000 connections; these tests hold a few hundred (a thousand where
``select``'s FD_SETSIZE limit has to be crossed), so they stay fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _helpers import wait_until
from _helpers_report import make_trial, write_run
from _helpers_server import running_server

from bench.analysis import validity
from bench.report import document as report
from bench.run import planning, scenario, swarm_run
from bench.run.scenario import ModelSpec
from bench.run.scenario_check import ScenarioError
from clients.config import SwarmConfig, SwarmError
from clients.swarm import run_swarm
from protocol import launch
from servers import available_models

REPO = Path(__file__).resolve().parent.parent


def idle_run(target: str, idle: int, busy: int = 5, **settings: object) -> dict:
    """A short open-loop run: ``busy`` connections at 50 req/s each, ``idle`` held ones."""
    config = SwarmConfig(target=target, connections=busy, idle_connections=idle, workers=2,
                         mode="open", rate=50.0 * busy, duration=1.0, warmup=0.3, timeout=3.0,
                         **settings)  # type: ignore[arg-type]
    return run_swarm(config)


def test_idle_connections_are_held_and_kept_out_of_latency() -> None:
    with running_server("epoll") as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(idle_run, f"{server.host}:{server.port}", idle=300,
                              connect_rate=3000.0)
        held = wait_until(lambda: server.usage()[0], lambda fds: fds >= 305, timeout=10)
        record = running.result(timeout=60)
    assert record["errors"] == {}
    assert record["connections_established"] == 5
    # each idle connection was answered once (the server accepted it), then held silent
    assert record["idle"] == {"connections": 300, "established": 300, "answered": 300,
                              "alive_at_end": 300, "errors": {}}
    assert record["idle_connections"] == 300
    assert record["connect_us"]["count"] == 305  # every connect is timed, idle ones too
    assert len(record["per_connection"]) == 5  # fairness and latency: the busy ones only
    assert record["fairness"]["connections"] == 5
    assert 200 <= record["requests"] <= 300  # 250 req/s for 1 s, nothing from the idle ones
    assert held >= 305  # the server did hold them all at once


def test_select_turns_the_excess_away_with_error_4() -> None:
    """Past FD_SETSIZE select answers ERROR 4 and closes: counted as over_capacity on the idle
    connections (the busy ones connect first and are served)."""
    with running_server("select") as server:
        record = idle_run(f"{server.host}:{server.port}", idle=1100)
    idle = record["idle"]
    turned_away = idle["errors"].get("over_capacity", 0)
    assert turned_away > 0
    assert record["errors"] == idle["errors"]  # every error is an idle connection's
    assert idle["established"] == 1100
    assert idle["alive_at_end"] + turned_away == 1100
    assert idle["alive_at_end"] < 1024
    assert idle["answered"] == idle["alive_at_end"]  # the ones select kept, it answered
    assert record["requests"] > 0 and record["connections_established"] == 5


def test_too_many_sockets_per_worker_is_refused_with_what_would_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch.resource, "getrlimit", lambda _kind: (1024, 1024))
    config = SwarmConfig(target="127.0.0.1:9", connections=1000, idle_connections=1000,
                         workers=1)
    with pytest.raises(SwarmError, match=r"limit of 2,064.*1,024.*use --workers 3 or more"):
        config.check()
    SwarmConfig(target="127.0.0.1:9", connections=1000, idle_connections=1000,
                workers=3).check()


def test_cli_takes_idle_connections() -> None:
    done = subprocess.run([sys.executable, "-m", "clients", "swarm", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    assert "--idle-connections" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "clients", "swarm", "--target", "127.0.0.1:9",
                          "--idle-connections", "-1"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "cannot be negative" in bad.stderr


# ---------------------------------------------------------------- the scenario

ALL_MODELS = ["threaded", "select", "poll", "epoll", "asyncio", "nonblocking", "native",
              "uvloop", "threadpool", "reactor", "prefork", "gevent", "iterative"]


def test_c10k_scenario_expands_to_both_cases_and_skips_with_reasons() -> None:
    loaded = scenario.load("c10k")
    busy, idle = loaded.cases
    assert (busy.name, busy.connections, busy.idle_connections, busy.mode, busy.rate) == (
        "c10k-c10000-open-r10000", 10_000, 0, "open", 10_000.0)  # 1 req/s per connection
    assert busy.duration_s >= 20 and busy.mix == "echo:64"
    assert (idle.name, idle.connections, idle.idle_connections) == (
        "c10k-c10-idle10000-open-r1000", 10, 10_000)
    assert loaded.placement == "split"
    models = [ModelSpec(name, name, (), "python3") for name in ALL_MODELS]
    trials = planning.plan(loaded, models)
    assert {t.model for t in trials} == set(ALL_MODELS) - {"iterative", "threadpool"}
    assert all(t.case.connect_rate > 0 and t.sockets >= 10_000 for t in trials)
    notes = planning.skip_notes(loaded, models)
    assert len(notes) == 4 and all("skipped in case c10k-" in n and ": " in n for n in notes)
    assert planning.estimate_s(trials) < 600  # the budget: under ten minutes for every model


def test_idle_connections_and_skip_servers_in_a_group() -> None:
    loaded = scenario.from_dict({"name": "t", "connect_rate": 500, "group": [{
        "name": "g", "connections": 5, "idle_connections": [0, 100],
        "skip_servers": {"select": "FD_SETSIZE"}}]})
    assert [c.name for c in loaded.cases] == ["echo64-c5-closed", "echo64-c5-idle100-closed"]
    trials = planning.plan(loaded, [ModelSpec(m, m, (), "py") for m in ("epoll", "select")])
    assert [t.model for t in trials] == ["epoll", "epoll"]
    assert trials[1].sockets == 105 and trials[1].ramp_s() == pytest.approx(0.21)
    assert planning.trial_estimate_s(trials[1]) - planning.trial_estimate_s(trials[0]) == \
        pytest.approx(0.21 - 0.01)
    for bad in ({"skip_servers": ["select"]}, {"skip_servers": {"select": " "}},
                {"idle_connections": -1}, {"idle_connections": "many"}):
        with pytest.raises(ScenarioError):
            scenario.from_dict({"name": "t", "group": [{"name": "g", **bad}]})


def test_swarm_workers_follow_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_run.resource, "getrlimit", lambda _kind: (1024, 1024))
    loaded = scenario.from_dict({"name": "t", "group": [{
        "name": "g", "connections": 10, "idle_connections": 3000}]})
    (trial,) = planning.plan(loaded, [ModelSpec("epoll", "epoll", (), "py")])
    assert swarm_run.swarm_workers(trial, 1) == 4  # 3,010 sockets, 960 per worker
    assert swarm_run.swarm_workers(trial, 8) == 8
    note = swarm_run.raise_fd_limit(trial.sockets)
    assert note is not None and "1,024" in note and "ulimit -Hn" in note
    assert swarm_run.raise_fd_limit(500) is None


# ---------------------------------------------------------------- a scaled-down c10k run


SMALL_C10K = """\
description = "c10k scaled down: 5 busy + 1,100 idle connections"
servers = ["epoll", "select", "poll"]
duration_s = 1.0
warmup_s = 0.3
timeout_s = 3.0
connect_rate = 4000

[[group]]
name = "c10k"
label = "c10k"
connections = [5]
idle_connections = [1100]
mode = "open"
rates = [250]
skip_servers = { poll = "left out to test the note" }
"""


@pytest.fixture(scope="module")
def small_c10k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real c10k-shaped run (1,100 idle connections: past select's FD_SETSIZE)."""
    folder = tmp_path_factory.mktemp("c10k")
    path = folder / "small.toml"
    path.write_text(SMALL_C10K)
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--scenario", str(path),
                           "--out", str(folder / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "run", done.stdout


def test_small_c10k_run_records_idle_connections(small_c10k: tuple[Path, str]) -> None:
    run_dir, out = small_c10k
    assert "model poll skipped in case c10k-c5-idle1100-open-r250: left out to test the note" \
        in " ".join(out.split())
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert set(records) == {"c10k-c5-idle1100-open-r250--epoll--r1",
                            "c10k-c5-idle1100-open-r250--select--r1"}
    epoll = records["c10k-c5-idle1100-open-r250--epoll--r1"]
    select = records["c10k-c5-idle1100-open-r250--select--r1"]
    for record in (epoll, select):
        assert record["status"] == "ok", record["failure"]
        assert record["idle_connections"] == 1100 and record["connect_rate"] == 4000
        assert record["swarm"]["idle"]["established"] == 1100
        assert record["interpreter_version"] and record["gil_enabled"] is not None
    assert epoll["swarm"]["errors"] == {}
    assert epoll["server"]["fds_max"] >= 1105  # the server held every connection at once
    growth = epoll["server"]["rss_max"] - epoll["server"]["rss_idle"]
    assert epoll["derived"]["rss_per_connection_bytes"] == pytest.approx(max(0, growth) / 1105)
    turned_away = select["swarm"]["errors"]["over_capacity"]
    assert turned_away == select["swarm"]["idle"]["errors"]["over_capacity"] > 0
    assert select["server"]["fds_max"] <= 1024


def test_small_c10k_report_has_the_c10k_section(small_c10k: tuple[Path, str]) -> None:
    run_dir, _ = small_c10k
    text = (run_dir / "report.md").read_text()
    assert "## C10K" in text
    assert "### c10k-c5-idle1100-open-r250 (5 busy connections + 1,100 idle ones" in text
    assert "Note: model poll skipped in case c10k-c5-idle1100-open-r250" in text
    section = text.split("## C10K", 1)[1].split("\n## ", 1)[0]
    marks = "| " + "".join(validity.MARK_NOTES)
    rows = {line.split(" | ")[0].strip(marks): line.split(" | ")
            for line in section.splitlines() if line.startswith(("| epoll", "| select"))}
    columns = [c.strip() for c in section.split("| model |", 1)[1].splitlines()[0].split("|")]
    columns = ["model", *[c for c in columns if c]]
    select = dict(zip(columns, [c.strip(" |") for c in rows["select"]], strict=True))
    epoll = dict(zip(columns, [c.strip(" |") for c in rows["epoll"]], strict=True))
    record = json.loads((run_dir / "trials" / "c10k-c5-idle1100-open-r250--select--r1.json")
                        .read_text())
    assert select["over_capacity"] == f"{record['swarm']['errors']['over_capacity']:,}"
    assert epoll["over_capacity"] == "0" and epoll["errors"] == "0"
    assert int(select["held"].replace(",", "")) < 1024 <= int(epoll["held"].replace(",", ""))
    # a c10k case is not a sweep: no verdict or sweep table for it, but a chart of its own
    verdict = text.split("## Verdict")[1].split("\n## ")[0]
    assert "Open-loop sweep" not in text and "c10k-c5" not in verdict
    assert "the C10K cases are compared in their own section" in verdict
    assert (run_dir / "charts" / "c10k.png").read_bytes().startswith(b"\x89PNG")
    assert "![C10K](charts/c10k.png)" in text


def test_c10k_section_lists_a_failed_model_with_its_reason(tmp_path: Path) -> None:
    case = "c10k-c100-open-r100"
    records = [make_trial(case, "c10k", "epoll", 1, 100, 100.0, mode="open", rate=100.0),
               make_trial(case, "c10k", "threaded", 1, 100, 0.0, mode="open", rate=100.0,
                          failure="swarm did not finish in time (server hung?); stopped it")]
    folder = write_run(tmp_path / "run", records, {"name": "synthetic"})
    text = report.to_markdown(report.build_report(folder))
    section = text.split("## C10K", 1)[1].split("\n## ", 1)[0]
    assert f"### {case} (100 busy connections, open loop at 100 req/s in all)" in section
    assert "| threaded✗ | 0/1 |" in section
    assert "failed: swarm did not finish in time" in section
    assert section.index("| epoll | 1/1 |") < section.index("| threaded✗")


def test_requests_waiting_for_a_busy_connection_are_not_the_clients_lateness() -> None:
    """10 connections, requests of 1 or 50 ms, 360 req/s offered (about 90% busy): requests
    often fall due while every connection is busy. That wait is the server's (it is in the
    corrected latency), not the client's own lateness. Counted as the client's, it came to
    0.8-1 ms on average here (and grew), close to flagging an idle client as saturated; the
    client's own lateness is ~0.1 ms."""
    with running_server("epoll") as server:
        record = run_swarm(SwarmConfig(
            target=f"{server.host}:{server.port}", connections=10, mode="open", rate=360.0,
            mix="sleep:1000,sleep:50000", duration=1.5, warmup=0.3, timeout=3.0))
    assert record["errors"] == {}
    assert abs(record["throughput_rps"] - 360) < 40
    lag = record["client"]["lag_us"]
    assert lag["mean"] < 500, lag
    assert not record["client"]["saturated"], record["client"]["reasons"]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read backlogs")
@pytest.mark.parametrize("model", available_models())
def test_every_model_listens_with_a_deep_accept_queue(model: str) -> None:
    """10,000 connects in a few seconds need the kernel's whole accept queue (the listen
    backlog, capped by net.core.somaxconn): asyncio and uvloop used to listen again with 100."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    with running_server(model) as server:
        done = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True,
                              text=True, timeout=10, check=True)
    backlogs = {int(line.split()[2]) for line in done.stdout.splitlines() if line.strip()}
    assert backlogs and min(backlogs) >= min(somaxconn, 4096), done.stdout
