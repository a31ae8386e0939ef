"""The swarm speaking RESP to a real redis-server (Debian's), started here on a free loopback
port with persistence off and stopped after: every reply correct, the swarm's count equal to
the server's own (INFO commandstats), through the command line, the library and the swarm
service's pooled workers. Skipped, with the reason, where redis-server is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.selfcheck.redis_check import Redis, running_redis, server_calls
from clients import service
from clients.config import SwarmConfig
from clients.record import EXIT_OK, exit_status
from clients.swarm import run_swarm

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed "
                                       "(apt-get install redis-server redis-tools)")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with running_redis(None, tmp_path_factory.mktemp("redis")) as server:
        yield server
    assert server.proc.poll() is not None and not psutil.pid_exists(server.proc.pid)


def counted(redis: Redis, run: Any) -> tuple[dict[str, Any], int]:
    """The record of ``run()`` and the PING/ECHO calls redis-server answered meanwhile."""
    before = server_calls(redis)
    record = run()
    return record, server_calls(redis) - before


def test_a_mix_with_pipelining_every_reply_correct_and_counted(redis: Redis) -> None:
    config = SwarmConfig(target=redis.target, protocol="resp", mix="ping,echo:64=2",
                         connections=6, pipeline=2, duration=0.8, warmup=0.2, timeout=2.0,
                         seed=3)
    record, calls = counted(redis, lambda: run_swarm(config))
    assert record["errors"] == {} and record["complete"] and exit_status(record) == EXIT_OK
    assert record["protocol"] == "resp" and record["mix"] == "ping,echo:64=2"
    assert [kind["kind"] for kind in record["latency_by_kind"]] == ["ping", "echo:64"]
    assert record["totals"]["sent"] == record["totals"]["answered_ok"] == calls > 0


def test_open_loop_and_the_fast_path(redis: Redis) -> None:
    """One kind, one in flight: the hot loop's own bytes comparison; open loop keeps its rate."""
    closed, calls = counted(redis, lambda: run_swarm(SwarmConfig(
        target=redis.target, protocol="resp", mix="echo:1000", connections=4, duration=0.6,
        warmup=0.2, timeout=2.0)))
    assert closed["errors"] == {} and closed["totals"]["answered_ok"] == calls > 0
    opened = run_swarm(SwarmConfig(target=redis.target, protocol="resp", mix="ping",
                                   connections=4, mode="open", rate=2000, duration=0.8,
                                   warmup=0.2, timeout=2.0))
    assert opened["errors"] == {} and opened["latency_corrected"]
    assert 0.8 * 2000 <= opened["throughput_rps"] <= 1.2 * 2000


def test_the_command_line_speaks_resp(redis: Redis, tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    done = subprocess.run([sys.executable, "-m", "clients", "swarm", "--protocol", "resp",
                           "--target", redis.target, "--mix", "ping", "--connections", "3",
                           "--duration", "0.5", "--warmup", "0.1", "--quiet", "--json",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["protocol"] == "resp" and record["errors"] == {} and record["requests"] > 0


def test_the_swarm_service_speaks_resp(redis: Redis, tmp_path: Path) -> None:
    """The service builds its config from the same parser: --protocol reaches its workers."""
    out = tmp_path / "record.json"
    pool = service.WorkerPool()
    notes: list[dict[str, Any]] = []
    try:
        reply, calls = counted(redis, lambda: service.run_once(
            ["--target", redis.target, "--protocol", "resp", "--mix", "echo:64",
             "--connections", "4", "--duration", "0.5", "--warmup", "0.1", "--json", str(out)],
            pool, notes.append))
    finally:
        pool.close()
    assert reply["status"] == EXIT_OK, reply
    record = json.loads(out.read_text())
    assert record["protocol"] == "resp" and record["errors"] == {}
    assert record["totals"]["answered_ok"] == calls > 0
    assert [note["op"] for note in notes] == ["started", "drained"]
