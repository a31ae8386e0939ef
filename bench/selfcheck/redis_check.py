"""The redis check of ``python -m bench validate``: redis-benchmark and the swarm on redis-server.

``check_redis``'s docstring says what is compared and why that comparison is fair.
``running_redis`` starts Debian's ``redis-server`` on a free loopback port, persistence off
(``--save '' --appendonly no``), pinned to the server CPU, through ``bench.procs`` (its own
process group, killed by the kernel if we die: no orphan on a failure or Ctrl-C) and stops and
reaps it on the way out. ``redis_benchmark`` runs ``redis-benchmark --csv`` pinned to the
client CPU and ``parse_csv`` reads its rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.environment import one_cpu_each
from bench.selfcheck.checks import Check, swarm
from bench.selfcheck.swarm_speed import BenchError

HOST = "127.0.0.1"
PROGRAMS = ("redis-server", "redis-benchmark")
INSTALL = "apt-get install redis-server redis-tools"
READY_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and redis binding it
STOP_GRACE_S = 3.0
CONNECTIONS = 50
ECHO_BYTES = 64
ECHO_ARG = ("concbench-" * 7)[:ECHO_BYTES]  # redis-benchmark takes it as a command-line word
BENCH_TIMEOUT_S = 60.0
# redis-benchmark counts requests, the swarm seconds: the benchmark's -n is this many seconds
# at the rate the swarm measured just before it in the same round (at least MIN_REQUESTS)
BENCH_SECONDS = 2.0
MIN_REQUESTS = 20_000
SWARM_DURATION_S, SWARM_WARMUP_S = 2.0, 0.5


@dataclass(frozen=True)
class Redis:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


def missing_programs() -> list[str]:
    """The redis programs not on PATH."""
    return [name for name in PROGRAMS if not shutil.which(name)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a RESP PING on a fresh connection is answered +PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


def redis_command(port: int, work: Path) -> list[str]:
    """redis-server on loopback, persistence off, its files (none) and log in ``work``."""
    return ["redis-server", "--bind", HOST, "--port", str(port), "--save", "",
            "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
            "--dir", str(work), "--logfile", "", "--databases", "1"]


@contextlib.contextmanager
def running_redis(cpus: Sequence[int] | None, work: Path) -> Iterator[Redis]:
    """A redis-server of our own, up and answering PING; stopped and reaped afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "redis-server.log"
    redis = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        with log.open("ab") as out:
            proc = procs.spawn(redis_command(port, work), cpus=cpus, stdout=out, stderr=out)
        try:
            if _await_ready(proc, port):
                redis = Redis(HOST, port, proc)
                break
        except BaseException:
            procs.stop(proc, grace_s=STOP_GRACE_S)
            raise
        procs.stop(proc, grace_s=STOP_GRACE_S)
    if redis is None:
        tail = log.read_text(errors="replace")[-600:].strip()
        raise BenchError(f"redis-server did not start (log: {tail})")
    try:
        yield redis
    finally:
        procs.stop(redis.proc, sig=signal.SIGTERM, grace_s=STOP_GRACE_S)


def _await_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once it answers PING; False if it exited (the port was taken) or took too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ping(HOST, port, timeout=0.5):
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- redis-benchmark


def parse_csv(text: str) -> dict[str, dict[str, float]]:
    """redis-benchmark --csv: per test name, rps and latencies (converted to µs).

    Its header is ``"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
    "p95_latency_ms","p99_latency_ms","max_latency_ms"`` (redis 6.2 and later; older
    versions wrote only test and rps, which gives no latency and is refused). Lines that are
    not rows (warnings) are skipped."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    header_at = next((i for i, row in enumerate(rows) if row and row[0] == "test"), None)
    if header_at is None:
        raise BenchError(f"redis-benchmark --csv printed no header: {text[:200]!r}")
    header = rows[header_at]
    needed = {"rps", "p50_latency_ms", "p99_latency_ms"}
    if not needed <= set(header):
        raise BenchError(f"redis-benchmark --csv has no {', '.join(sorted(needed - set(header)))}"
                         " column (redis-tools 6.2 or later prints latency percentiles)")
    parsed: dict[str, dict[str, float]] = {}
    for row in rows[header_at + 1:]:
        if len(row) != len(header):
            continue
        fields = dict(zip(header, row, strict=True))
        try:
            figures = {"throughput_rps": float(fields["rps"])}
            for name, value in fields.items():
                if name.endswith("_latency_ms"):
                    figures[name.removesuffix("_latency_ms") + "_us"] = float(value) * 1000.0
        except ValueError:
            continue
        parsed[fields["test"]] = figures
    if not parsed:
        raise BenchError(f"redis-benchmark --csv printed no result row: {text[:200]!r}")
    return parsed


def benchmark_command(redis: Redis, operation: str, requests: int,
                      connections: int = CONNECTIONS) -> list[str]:
    """redis-benchmark as the swarm is set beside it: 50 connections, no pipelining, CSV."""
    command = ["redis-benchmark", "-h", redis.host, "-p", str(redis.port),
               "-c", str(connections), "-P", "1", "-n", str(requests), "--csv"]
    if operation == "ping":
        return [*command, "-t", "ping_mbulk"]  # PING as a RESP array, as the swarm sends it
    return [*command, "ECHO", ECHO_ARG]


def redis_benchmark(redis: Redis, operation: str, requests: int,
                    cpus: Sequence[int] | None, work: Path, label: str,
                    connections: int = CONNECTIONS) -> dict[str, float]:
    """One redis-benchmark run pinned to ``cpus``, bounded in time; its row's figures."""
    out, err = work / f"{label}.out", work / f"{label}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = procs.spawn(benchmark_command(redis, operation, requests, connections), cpus=cpus,
                           stdout=stdout, stderr=stderr)
    try:
        status = proc.wait(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"redis-benchmark {label} overran {BENCH_TIMEOUT_S:g} s") from None
    finally:
        procs.stop(proc, sig=signal.SIGINT, grace_s=2.0)
    if status != 0:
        raise BenchError(f"redis-benchmark {label} exit status {status}: "
                         f"{err.read_text(errors='replace')[-300:].strip()}")
    rows = parse_csv(out.read_text(errors="replace"))
    if len(rows) != 1:
        raise BenchError(f"redis-benchmark {label}: expected one result row, got {list(rows)}")
    return next(iter(rows.values()))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarize(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Per-round ratios and figures, as medians."""
    return {key: median([r[key] for r in rounds]) for key in rounds[0]}


# ---------------------------------------------------------------- the check

# bands, chosen from measurements on this machine (2 shared cores; the figures in the docstring)
THROUGHPUT_AT_LEAST = 0.85  # the swarm's goal against a C client (swarm_speed.GOAL_RATIO)
P50_BAND_IDLE = (0.9, 1.35)  # 1 connection: measured 0.98-1.30, median 1.1 over 16 rounds
OPERATIONS = (("ping", "ping", "PING"), ("echo", f"echo:{ECHO_BYTES}", f"ECHO {ECHO_BYTES} B"))
LEVELS = (CONNECTIONS, 1)


def server_calls(redis: Redis) -> int:
    """PING and ECHO calls redis-server has answered so far (its INFO commandstats)."""
    with socket.create_connection((redis.host, redis.port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            header, _, body = data.partition(b"\r\n")
            if header.startswith(b"$") and len(body) >= int(header[1:]) + 2:
                break
    return sum(_calls(line) for line in data.decode(errors="replace").splitlines()
               if line.startswith(("cmdstat_ping:", "cmdstat_echo:")))


def _calls(line: str) -> int:
    """``cmdstat_ping:calls=12,usec=...`` -> 12."""
    for field in line.partition(":")[2].split(","):
        name, _, value = field.partition("=")
        if name == "calls":
            return int(value)
    return 0


def _band(value: float, band: tuple[float, float]) -> str:
    return "pass" if band[0] <= value <= band[1] else "fail"


def check_redis(work: Path, rounds: int) -> list[Check]:
    """redis-benchmark and the swarm (``--protocol resp``) on one redis-server, taking turns.

    redis-server (persistence off) is pinned to one CPU, and the two clients take turns on the
    other, in alternating order, ``rounds`` times: PING (as a RESP array: redis-benchmark's
    ``PING_MBULK``) and ECHO of 64 bytes, closed loop, one request in flight per connection
    (``-P 1``), at 50 connections and at 1.

    What a fair comparison is. At 50 connections redis-benchmark, one C thread doing a write
    and two epoll_ctl calls per request, is itself the bottleneck (99 % of its core, 90 % of it
    in the kernel): about 137,000 requests/s here, where the swarm makes about 250,000. Its
    latency runs from its write to its read, leaving out the time a connection waits in its own
    event loop to send again: by Little's law only ~27 of its 50 requests are in flight, while
    the swarm's latency covers the whole cycle (50 of 50). So at 50 connections:

    - throughput, swarm ÷ redis-benchmark, must be at least 0.85 (the swarm's goal against a C
      client; above 1 is expected here, since redis-benchmark is the slower client). That the
      swarm's count is true is checked against the server itself: every swarm run's replies
      must equal the PING and ECHO calls redis-server counted (``INFO commandstats``) over it,
      exactly;
    - their p50 and p99 are shown but not judged: a latency is the time behind the requests
      in flight, and the two clients keep different numbers in flight (~27 against 50).

    Where neither client is saturated, one connection (each client ~40 % of its core), the
    latencies must agree: p50 ratio in 0.9-1.35. It is not 1: the swarm stamps a send with the
    clock read when it woke for the previous reply, so its latency includes its own read and
    write (~5-13 µs of a ~65 µs round trip), and redis-benchmark's histogram reports ~8 µs
    steps at this range (63, 71 µs); measured 0.98-1.30, median 1.1 over 16 rounds.
    """
    missing = missing_programs()
    if missing:
        return [Check("redis", "swarm vs redis-benchmark on redis-server", None, "—", "skip",
                      f"not run: {' and '.join(missing)} not installed: {INSTALL}")]
    server_cpus, client_cpus = one_cpu_each()
    per: dict[tuple[str, int], list[dict[str, Any]]] = {}
    counted: list[tuple[int, int]] = []  # (swarm replies, server calls) per swarm run
    bench_rate: dict[tuple[str, int], float] = {}
    with running_redis(server_cpus, work / "redis") as redis:
        for index in range(rounds):
            for op, mix, _ in OPERATIONS:
                for connections in LEVELS:
                    key = (op, connections)
                    label = f"redis-{op}-c{connections}-{index}"
                    args = ("--protocol", "resp", "--connections", str(connections),
                            "--mix", mix)
                    if index % 2 == 0:  # the two clients take turns at going first
                        ours = _swarm_run(redis, args, client_cpus, work, label, counted, swarm)
                        theirs = _bench_run(redis, op, connections,
                                            bench_rate.get(key, ours["throughput_rps"]),
                                            client_cpus, work, label)
                    else:
                        theirs = _bench_run(redis, op, connections, bench_rate[key],
                                            client_cpus, work, label)
                        ours = _swarm_run(redis, args, client_cpus, work, label, counted, swarm)
                    bench_rate[key] = theirs["throughput_rps"]
                    per.setdefault(key, []).append(_round_figures(ours, theirs))
    return _rows(per, counted, Check)


def _swarm_run(redis: Redis, args: Sequence[str], cpus: Sequence[int] | None, work: Path,
               label: str, counted: list[tuple[int, int]], swarm: Any) -> dict[str, Any]:
    """One swarm run on redis; its replies and the server's count of calls over it noted."""
    before = server_calls(redis)
    record: dict[str, Any] = swarm(redis.target, cpus, work, f"{label}-swarm", *args,
                                   duration=SWARM_DURATION_S, warmup=SWARM_WARMUP_S)
    counted.append((record["totals"]["answered_ok"], server_calls(redis) - before))
    if record["errors_total"] or not record["complete"]:
        raise BenchError(f"swarm {label}: errors {record['errors']}, stopped: "
                         f"{record['stopped']}")
    return record


def _bench_run(redis: Redis, op: str, connections: int, rate: float,
               cpus: Sequence[int] | None, work: Path, label: str) -> dict[str, float]:
    """One redis-benchmark run of about BENCH_SECONDS at ``rate``."""
    requests = max(MIN_REQUESTS, int(BENCH_SECONDS * rate))
    return redis_benchmark(redis, op, requests, cpus, work, f"{label}-bench",
                           connections=connections)


def _round_figures(ours: dict[str, Any], theirs: dict[str, float]) -> dict[str, Any]:
    latency = ours["latency_us"]
    return {
        "swarm_rps": ours["throughput_rps"], "bench_rps": theirs["throughput_rps"],
        "swarm_p50": latency["p50"], "bench_p50": theirs["p50_us"],
        "swarm_p99": latency["p99"], "bench_p99": theirs["p99_us"],
        # requests in flight by Little's law (throughput x mean latency)
        "swarm_in_flight": ours["throughput_rps"] * latency["mean"] / 1e6,
        "bench_in_flight": theirs["throughput_rps"] * theirs["avg_us"] / 1e6,
        "swarm_saturated": float(bool(ours["client"]["saturated"])),
    }


def _rows(per: dict[tuple[str, int], list[dict[str, Any]]], counted: list[tuple[int, int]],
          check: type[Check]) -> list[Check]:
    rows = []
    for op, _, name in OPERATIONS:
        loaded = per[(op, CONNECTIONS)]
        idle = per[(op, 1)]
        m = summarize(loaded)
        throughput = [r["swarm_rps"] / r["bench_rps"] for r in loaded]
        ratio = median(throughput)
        rows.append(check(
            "redis", f"swarm ÷ redis-benchmark throughput ({name}, {CONNECTIONS} conns)", ratio,
            f"≥ {THROUGHPUT_AT_LEAST:g}", "pass" if ratio >= THROUGHPUT_AT_LEAST else "fail",
            f"{m['swarm_rps']:,.0f} vs {m['bench_rps']:,.0f}/s; in flight by Little's law "
            f"{m['swarm_in_flight']:.1f} vs {m['bench_in_flight']:.1f} of {CONNECTIONS}; "
            "rounds: " + ", ".join(f"{r:.2f}" for r in throughput)))
        for figure in ("p50", "p99"):  # shown, not judged: not the same requests in flight
            ratios = [r[f"swarm_{figure}"] / r[f"bench_{figure}"] for r in loaded]
            rows.append(check(
                "redis", f"swarm ÷ redis-benchmark {figure} ({name}, {CONNECTIONS} conns): "
                "information", median(ratios), "—", "info",
                f"{m[f'swarm_{figure}']:,.0f} vs {m[f'bench_{figure}']:,.0f} µs at "
                f"{m['swarm_in_flight']:.1f} vs {m['bench_in_flight']:.1f} requests in flight: "
                "not comparable; rounds: " + ", ".join(f"{r:.2f}" for r in ratios)))
        i = summarize(idle)
        ratios = [r["swarm_p50"] / r["bench_p50"] for r in idle]
        value = median(ratios)
        saturated = sum(1 for r in idle if r["swarm_saturated"])
        rows.append(check(
            "redis", f"swarm ÷ redis-benchmark p50 ({name}, 1 conn: neither client saturated)",
            value, f"{P50_BAND_IDLE[0]:g}–{P50_BAND_IDLE[1]:g}", _band(value, P50_BAND_IDLE),
            f"p50 {i['swarm_p50']:,.0f} vs {i['bench_p50']:,.0f} µs, p99 {i['swarm_p99']:,.0f} "
            f"vs {i['bench_p99']:,.0f} µs, {i['swarm_rps']:,.0f} vs {i['bench_rps']:,.0f}/s; "
            "rounds: " + ", ".join(f"{r:.2f}" for r in ratios)
            + (f"; swarm flagged saturated in {saturated} round(s)" if saturated else "")))
    exact = sum(1 for ours, server in counted if ours == server)
    worst = max(counted, key=lambda pair: abs(pair[0] - pair[1]))
    rows.append(check(
        "redis", "swarm replies ÷ redis-server's own count (INFO commandstats), worst run",
        worst[0] / worst[1] if worst[1] else None, "1 exactly",
        "pass" if exact == len(counted) else "fail",
        f"{exact} of {len(counted)} swarm runs exact; worst {worst[0]:,} vs {worst[1]:,}"))
    return rows
