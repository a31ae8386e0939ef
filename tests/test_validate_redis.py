"""The redis check of ``python -m bench validate`` (bench/selfcheck/redis_check.py): reading
redis-benchmark's --csv, redis-server's call counts, the verdicts from per-round figures, the
line it prints when redis is not installed, and its redis-server stopped and reaped whatever
happens. (The measurement itself is ``make validate``'s: no test here times anything.)"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.selfcheck import redis_check, validate
from bench.selfcheck.swarm_speed import BenchError

# redis-benchmark 7.0 --csv, as printed here: a -t test, a custom command, and a warning
HEADER = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
          '"p99_latency_ms","max_latency_ms"\n')
CSV_T = HEADER + '"PING_MBULK","136612.02","0.197","0.048","0.191","0.247","0.327","2.671"\n'
CSV_CUSTOM = ("WARNING: Could not fetch server CONFIG\n" + HEADER
              + f'"ECHO {redis_check.ECHO_ARG}","134408.59","0.200","0.056","0.191","0.255",'
              '"0.343","4.599"\n')


def test_the_csv_rows_in_microseconds() -> None:
    (ping,) = redis_check.parse_csv(CSV_T).values()
    assert ping == pytest.approx({"throughput_rps": 136612.02, "avg_us": 197.0, "min_us": 48.0,
                                  "p50_us": 191.0, "p95_us": 247.0, "p99_us": 327.0,
                                  "max_us": 2671.0})
    rows = redis_check.parse_csv(CSV_CUSTOM)
    assert list(rows) == [f"ECHO {redis_check.ECHO_ARG}"]
    assert rows[f"ECHO {redis_check.ECHO_ARG}"]["p99_us"] == pytest.approx(343.0)
    both = redis_check.parse_csv(CSV_T + CSV_T.splitlines()[1].replace("PING_MBULK", "X") + "\n")
    assert list(both) == ["PING_MBULK", "X"]


@pytest.mark.parametrize("text", [
    "", "nothing useful\n",
    '"test","rps"\n"PING_MBULK","1000.0"\n',  # redis-tools before 6.2: no percentiles
    CSV_T.splitlines()[0] + "\n",  # a header and no row
    CSV_T.replace("136612.02", "fast"),  # a row that is not numbers
])
def test_csv_that_cannot_be_read_is_refused(text: str) -> None:
    with pytest.raises(BenchError):
        redis_check.parse_csv(text)


def test_the_commands() -> None:
    redis = redis_check.Redis("127.0.0.1", 6400, None)  # type: ignore[arg-type]
    ping = redis_check.benchmark_command(redis, "ping", 1000)
    assert ping[-2:] == ["-t", "ping_mbulk"] and "--csv" in ping
    assert ping[ping.index("-c") + 1] == "50" and ping[ping.index("-P") + 1] == "1"
    echo = redis_check.benchmark_command(redis, "echo", 1000, connections=1)
    assert echo[-2:] == ["ECHO", redis_check.ECHO_ARG] and len(echo[-1]) == 64
    assert echo[echo.index("-c") + 1] == "1"
    server = redis_check.redis_command(6400, Path("/tmp/x"))
    assert server[server.index("--save") + 1] == "" and "--appendonly" in server
    assert server[server.index("--bind") + 1] == "127.0.0.1"
    assert server[server.index("--appendonly") + 1] == "no"


def test_call_counts_from_commandstats() -> None:
    assert redis_check._calls("cmdstat_ping:calls=157002,usec=10862,usec_per_call=0.07") == 157002
    assert redis_check._calls("cmdstat_ping:usec=1") == 0


def figures(ratio: float = 1.8, p50: tuple[float, float] = (190, 191),
            p99: tuple[float, float] = (340, 320), idle: tuple[float, float] = (75, 68)
            ) -> dict[tuple[str, int], list[dict[str, Any]]]:
    loaded = {"swarm_rps": 250_000.0 * ratio / 1.8, "bench_rps": 250_000.0 / 1.8,
              "swarm_p50": p50[0], "bench_p50": p50[1], "swarm_p99": p99[0], "bench_p99": p99[1],
              "swarm_in_flight": 50.0, "bench_in_flight": 27.0, "swarm_saturated": 1.0}
    quiet = {**loaded, "swarm_rps": 13_000.0, "bench_rps": 14_000.0, "swarm_p50": idle[0],
             "bench_p50": idle[1], "swarm_saturated": 0.0}
    return {(op, n): [row, row] for op in ("ping", "echo")
            for n, row in ((50, loaded), (1, quiet))}


def verdicts(per: dict[tuple[str, int], list[dict[str, Any]]],
             counted: list[tuple[int, int]] | None = None) -> dict[str, str]:
    rows = redis_check._rows(per, counted or [(10, 10), (20, 20)], validate.Check)
    return {row.figure: row.outcome for row in rows}


def test_the_verdicts_follow_the_bands() -> None:
    """Throughput at 50 connections and p50 at one are judged; the latencies at 50 are shown
    only (the two clients keep different numbers of requests in flight there)."""
    good = verdicts(figures())
    assert len(good) == 9
    assert {k: v for k, v in good.items() if "50 conns): information" in k} == {
        f"swarm ÷ redis-benchmark {p} ({op}, 50 conns): information": "info"
        for p in ("p50", "p99") for op in ("PING", "ECHO 64 B")}
    assert {v for k, v in good.items() if "information" not in k} == {"pass"}
    slow = verdicts(figures(ratio=0.5))
    assert slow["swarm ÷ redis-benchmark throughput (PING, 50 conns)"] == "fail"
    assert verdicts(figures(p50=(300, 190)))[
        "swarm ÷ redis-benchmark p50 (PING, 50 conns): information"] == "info"
    assert verdicts(figures(idle=(100, 63)))[
        "swarm ÷ redis-benchmark p50 (PING, 1 conn: neither client saturated)"] == "fail"
    miscounted = verdicts(figures(), counted=[(10, 10), (19, 20)])
    assert miscounted["swarm replies ÷ redis-server's own count (INFO commandstats), worst run"] \
        == "fail"


def test_missing_redis_is_not_run_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (row,) = validate.check_redis(Path("."), 1)
    assert row.outcome == "skip" and row.note.startswith("not run:")
    assert "apt-get install redis-server redis-tools" in row.note


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_server_is_stopped_and_reaped_on_a_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), redis_check.running_redis(None, tmp_path) as redis:
        pid = redis.proc.pid
        assert redis_check.ping(redis.host, redis.port)
        assert redis_check.server_calls(redis) >= 1  # the readiness PING
        raise RuntimeError("a check failed")
    assert redis.proc.returncode is not None and not psutil.pid_exists(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, signal.SIG_DFL)
