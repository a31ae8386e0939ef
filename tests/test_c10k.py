"""C10K: the swarm's idle connections, the c10k scenario, and a scaled-down c10k run.

The real scenario holds 10,000 connections; these tests hold a few hundred (a thousand where
``select``'s FD_SETSIZE limit has to be crossed), so they stay fast.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _helpers import wait_until
from _helpers_server import running_server

from clients import swarm as swarm_module
from clients.swarm import SwarmConfig, SwarmError, run_swarm

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
    assert record["idle"] == {"connections": 300, "established": 300, "alive_at_end": 300,
                              "errors": {}}
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
    assert record["requests"] > 0 and record["connections_established"] == 5


def test_too_many_sockets_per_worker_is_refused_with_what_would_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm_module.resource, "getrlimit", lambda _kind: (1024, 1024))
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
