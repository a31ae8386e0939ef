"""``python -m bench validate``: the instrument's report card, measured on this machine.

Each check runs the swarm side by side with something trusted, interleaved and repeated
(``--rounds``), the server pinned to one CPU and the clients taking turns on another:

- **native**: the swarm against the minimal C client on the ``native`` model (closed loop,
  50 connections, 64-byte ECHO): every round where the swarm was slower must have it flagged
  saturated (the runner then never ranks its throughput); the throughput ratio is shown;
- **known latency**: the ``threaded`` model answering SLEEP 2000 (2 ms late, ``time.sleep``);
  the swarm's p50 against an independent blocking client's (one thread and socket per
  connection, timed with ``perf_counter``), at 1 and 10 connections;
- **coordinated omission**: the ``epoll`` model frozen (SIGSTOP/SIGCONT of its process group)
  for ``FREEZE_S`` of every second: open-loop p99 (latency from the schedule) must show the
  freeze (at least half of it), closed-loop p99 must hide it (under half), as wrk2's README
  demonstrates;
- **redis**: redis-benchmark and the swarm (``--protocol resp``) on a redis-server started
  here (``bench/selfcheck/redis_check.py``, whose ``check_redis`` says what a fair comparison
  is): throughput ratio at 50 connections, p50 at one connection (neither client saturated:
  at 50 the two keep different numbers of requests in flight, so their latencies are shown,
  not judged), and the swarm's replies against redis-server's own count; not run, with
  the line to install them, when redis-server or redis-benchmark is missing.

A table gives each figure, its expected band and pass/fail; the exit status is 1 when a check
fails (a skipped check does not fail), so CI can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.environment import one_cpu_each
from bench.run.listing import terminal
from bench.selfcheck.checks import Check, swarm
from bench.selfcheck.redis_check import check_redis
from bench.selfcheck.swarm_speed import (
    GOAL_RATIO,
    BenchError,
    Settings,
    fmt,
    run_load,
    running_server,
    summarize_rounds,
)
from protocol import FrameDecoder, Op, encode_request

SLEEP_US = 2000
LATENCY_BAND = (0.9, 1.1)  # swarm p50 ÷ blocking client p50
FREEZE_S = 0.1  # of every second: 10 % of the time
NATIVE_MIN_ROUNDS = 4
OPEN_RATE = 1000.0
CO_SHOWN = 0.5  # a p99 at least this share of the freeze shows it


# ---------------------------------------------------------------- the checks


def check_native(work: Path, rounds: int) -> list[Check]:
    """Swarm and native C client on the native model, interleaved, the order alternating (as
    ``make bench-swarm`` does), over at least NATIVE_MIN_ROUNDS rounds.

    What makes the instrument trustworthy is not its speed but that it knows its limit: in
    every round where the swarm made fewer requests than the C client (it was the ceiling,
    not the server), it must have flagged itself saturated, so that the runner leaves such a
    throughput out or shows it as a lower bound. That is the check; the ratio of the two
    throughputs (the swarm's goal of 0.85 of a C client, ``make bench-swarm``) is shown
    beside it as information."""
    server_cpus, client_cpus = one_cpu_each()
    settings = Settings(duration_s=2.0, warmup_s=0.5)
    taken = []
    with running_server("native", server_cpus, work) as server:
        for index in range(max(rounds, NATIVE_MIN_ROUNDS)):
            record: dict[str, Any] = {"round": index + 1}
            for client in (("native", "swarm") if index % 2 == 0 else ("swarm", "native")):
                record[client] = run_load(client, server, settings, client_cpus, work,
                                          f"{client}-{index}")
            record["ratio"] = (record["swarm"]["throughput_rps"]
                               / record["native"]["throughput_rps"])
            taken.append(record)
    summary = summarize_rounds(taken, GOAL_RATIO)  # the medians make bench-swarm reports
    slower = [r for r in taken if r["ratio"] < 1.0]
    unflagged = [r for r in slower if not r["swarm"]["client_saturated"]]
    return [
        Check("native", "swarm slower than the C client ⇒ flagged saturated (native, 50 "
              "conns), rounds unflagged", len(unflagged), "0",
              "pass" if not unflagged else "fail",
              f"{len(slower)} of {len(taken)} rounds slower, {len(slower) - len(unflagged)} "
              "of them flagged" + (": unflagged rounds " + ", ".join(
                  str(r["round"]) for r in unflagged) if unflagged else "")),
        Check("native", "swarm ÷ C client throughput (native, 50 conns): information",
              summary["ratio_median"], f"goal ≥ {GOAL_RATIO:g}", "info",
              f"{fmt(summary['swarm_rps_median'])} vs {fmt(summary['native_rps_median'])}/s, "
              f"client CPU {fmt(summary['swarm_cpu_median'])} vs "
              f"{fmt(summary['native_client_cpu_median'])} %; rounds: "
              + ", ".join(f"{r['ratio']:.2f}" for r in taken)),
    ]


def blocking_p50_us(host: str, port: int, connections: int, duration: float) -> float:
    """An independent client: one blocking socket per thread, SLEEP requests back to back."""
    frame = encode_request(Op.SLEEP, SLEEP_US, b"")
    samples: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + duration

    def one() -> None:
        own = []
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            decoder = FrameDecoder()
            while time.monotonic() < end:
                start = time.perf_counter()
                sock.sendall(frame)
                while decoder.next_frame() is None:
                    data = sock.recv(65536)
                    if not data:
                        raise BenchError("the known-latency server closed a connection")
                    decoder.feed(data)
                own.append((time.perf_counter() - start) * 1e6)
        with lock:
            samples.extend(own[1:])  # the first includes connecting

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statistics.median(samples)


def check_known_latency(work: Path, rounds: int) -> list[Check]:
    """The swarm's p50 against a blocking client's on a server 2 ms late, 1 and 10 conns."""
    server_cpus, client_cpus = one_cpu_each()
    rows = []
    with running_server("threaded", server_cpus, work) as server:
        target = f"{server.host}:{server.port}"
        for connections in (1, 10):
            ratios = []
            for index in range(rounds):
                record = swarm(target, client_cpus, work, f"sleep-c{connections}-{index}",
                               "--connections", str(connections), "--mix", f"sleep:{SLEEP_US}")
                with _pinned(client_cpus):
                    theirs = blocking_p50_us(server.host, server.port, connections, 2.0)
                ratios.append(record["latency_us"]["p50"] / theirs)
            ratio = statistics.median(ratios)
            low, high = LATENCY_BAND
            rows.append(Check("known latency", f"swarm p50 ÷ blocking p50 (SLEEP 2 ms, "
                              f"{connections} conn{'s' if connections > 1 else ''})", ratio,
                              f"{low:g}–{high:g}", "pass" if low <= ratio <= high else "fail",
                              "rounds: " + ", ".join(f"{r:.3f}" for r in ratios)))
    return rows


@contextlib.contextmanager
def _pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """This process on ``cpus`` for a while (the in-process blocking client)."""
    before = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def _freezing(pid: int, freeze_s: float) -> Iterator[None]:
    """SIGSTOP the process group of ``pid`` for ``freeze_s`` of every second, SIGCONT after."""
    group = os.getpgid(pid)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0 - freeze_s):
            os.killpg(group, signal.SIGSTOP)
            time.sleep(freeze_s)
            os.killpg(group, signal.SIGCONT)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        os.killpg(group, signal.SIGCONT)


def check_coordinated_omission(work: Path, rounds: int) -> list[Check]:
    """Open loop shows a server frozen FREEZE_S of every second; closed loop hides it."""
    server_cpus, client_cpus = one_cpu_each()
    shown_us = CO_SHOWN * FREEZE_S * 1e6
    opened, closed = [], []
    with running_server("epoll", server_cpus, work) as server:
        target = f"{server.host}:{server.port}"
        with _freezing(server.proc.pid, FREEZE_S):
            for index in range(rounds):
                common = ("--connections", "10")
                opened.append(swarm(target, client_cpus, work, f"co-open-{index}", *common,
                                    "--mode", "open", "--rate", str(OPEN_RATE),
                                    duration=3.0)["latency_us"]["p99"])
                closed.append(swarm(target, client_cpus, work, f"co-closed-{index}", *common,
                                    duration=3.0)["latency_us"]["p99"])
    open_p99, closed_p99 = statistics.median(opened), statistics.median(closed)
    share = f"frozen {FREEZE_S * 1000:.0f} ms of every 1 s"
    return [
        Check("CO trap", f"open-loop p99 (µs), {share}", open_p99, f"≥ {shown_us:,.0f}",
              "pass" if open_p99 >= shown_us else "fail"),
        Check("CO trap", f"closed-loop p99 (µs), {share}", closed_p99, f"< {shown_us:,.0f}",
              "pass" if closed_p99 < shown_us else "fail", "closed loop hides the freeze"),
    ]


CHECKS: dict[str, Callable[[Path, int], list[Check]]] = {
    "native": check_native, "latency": check_known_latency,
    "co": check_coordinated_omission, "redis": check_redis,  # redis_check.py
}


# ---------------------------------------------------------------- the verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (2)")
    parser.add_argument("--only", default=",".join(CHECKS),
                        help=f"checks to run, comma-separated (default {','.join(CHECKS)})")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")


def table(rows: list[Check]) -> Table:
    out = Table(title="concbench validate: the swarm against trusted tools")
    for column in ("check", "figure", "value", "expected", "result", "note"):
        out.add_column(column, justify="right" if column == "value" else "left")
    colours = {"pass": "green", "fail": "red", "skip": "yellow", "info": "cyan"}
    for row in rows:
        value = "—" if row.value is None else (
            f"{row.value:,.0f}" if row.value >= 100 else f"{row.value:.3f}")
        out.add_row(row.name, row.figure, value, row.band,
                    f"[{colours[row.outcome]}]{row.outcome}[/]", row.note)
    return out


def run(options: argparse.Namespace) -> int:
    console = terminal()  # a log or a pipe gets the table at a readable width
    chosen = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        console.print(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}")
        return 2
    load = os.getloadavg()[0]
    console.print(f"load average {load:.2f} on {os.cpu_count()} CPUs; server/client CPUs "
                  f"{one_cpu_each()}")
    rows: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="concbench-validate-") as folder:
        for name in chosen:
            try:
                rows += CHECKS[name](Path(folder), max(1, options.rounds))
            except BenchError as error:
                rows.append(Check(name, "could not be measured", None, "—", "fail", str(error)))
    console.print(table(rows))
    if options.json:
        options.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 1 if any(r.outcome == "fail" for r in rows) else 0
