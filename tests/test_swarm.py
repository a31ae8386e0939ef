"""The swarm measures what the server does: latency, counts, failures, and its own limits.

The toy servers here run in threads of the test process (one thread per connection) and answer
each request at a time chosen by a function of when it was read, so the expected figures are
known: exactly 2 ms late, or frozen 200 ms of every second. They count what they answered.
The swarm's workers are separate processes, so the toy server's GIL does not slow them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from _helpers import ToyListener, wait_until
from _helpers_server import running_server
from hdrh.histogram import HdrHistogram
from hypothesis import given
from hypothesis import strategies as st

from clients.config import SwarmConfig, SwarmError, parse_target
from clients.mix import MixEntry, MixError, build_kind, format_mix, kind_sequence, parse_mix
from clients.plan import Timeline, WorkerPlan
from clients.record import (
    EXIT_CANNOT_RUN,
    EXIT_ERRORS,
    EXIT_OK,
    RECORD_KEYS,
    _client_lag,
    _cpu_reasons,
    exit_status,
    jain_index,
)
from clients.swarm import run_swarm
from clients.worker import make_worker
from protocol import (
    HEADER,
    ErrorValue,
    FrameDecoder,
    Op,
    Status,
    encode_response,
    respond,
    work,
)

LATENCY_KEYS = {"p50", "p90", "p99", "p99_9", "p99_99", "max", "mean"}
MS = 1000.0  # µs


class ToyServer(ToyListener):
    """Thread per connection; each request is answered at ``answer_at(time it was read)``."""

    def __init__(self, answer_at: Callable[[float], float] = lambda read_at: read_at) -> None:
        self.answer_at = answer_at
        self.replies = 0
        super().__init__()

    def _serve(self, sock: socket.socket) -> None:
        decoder = FrameDecoder()
        with sock:
            for data in self.received(sock):
                read_at = time.monotonic()
                decoder.feed(data)
                for frame in decoder.frames():
                    delay = self.answer_at(read_at) - time.monotonic()
                    if delay > 0 and self.stopping.wait(delay):
                        return
                    reply = respond(frame.code, frame.value, frame.payload)
                    try:
                        sock.sendall(reply.data)
                    except OSError:
                        return
                    with self.lock:
                        self.replies += 1

@contextlib.contextmanager
def toy_server(answer_at: Callable[[float], float] | None = None) -> Iterator[ToyServer]:
    server = ToyServer(answer_at) if answer_at else ToyServer()
    try:
        yield server
    finally:
        server.close()


def quick(target: str, **settings: object) -> SwarmConfig:
    """A short run's settings."""
    values: dict[str, object] = {"connections": 4, "duration": 1.0, "warmup": 0.3,
                                 "timeout": 2.0, "seed": 7}
    values.update(settings)
    return SwarmConfig(target=target, **values)  # type: ignore[arg-type]


# ------------------------------------------------------------------ latency is what it is


def test_p50_against_a_server_exactly_2ms_late() -> None:
    with toy_server(lambda read_at: read_at + 0.002) as server:
        record = run_swarm(quick(server.target, connections=10, duration=2.0, warmup=0.5))
    assert record["errors"] == {}
    assert 2.0 * MS <= record["latency_us"]["p50"] <= 2.8 * MS, record["latency_us"]
    assert record["latency_us"]["p50"] <= record["latency_us"]["p99"] <= record["latency_us"][
        "max"]
    # Little's law as a cross-check: 10 connections, one request each, ~2.2 ms per round trip
    assert 10 / 0.0035 < record["throughput_rps"] < 10 / 0.002


def freezing(period: float = 1.0, freeze: float = 0.2) -> Callable[[float], float]:
    """Answer at once, except during the first ``freeze`` seconds of every ``period``."""
    origin = time.monotonic()

    def answer_at(read_at: float) -> float:
        phase = (read_at - origin) % period
        return read_at + (freeze - phase if phase < freeze else 0.0)

    return answer_at


def test_open_loop_shows_a_freeze_that_closed_loop_hides() -> None:
    """A server frozen 200 ms of every second: 20% of arrivals wait up to 200 ms.

    A view "shows" the freeze when its p99 reaches half of it (100 ms). Open loop (latency from
    the scheduled send) puts p99 near 200 ms. Closed loop only ever has one request per
    connection stuck in a freeze, a handful among thousands of fast ones, so its p99 stays
    under 100 ms: it hides the freeze, although its max (>= 100 ms) proves the freezes did
    happen during the closed-loop run too.
    """
    with toy_server(freezing()) as server:
        opened = run_swarm(quick(server.target, mode="open", rate=1000, connections=10,
                                 duration=1.6, warmup=0.3))
        closed = run_swarm(quick(server.target, connections=10, duration=1.6, warmup=0.3))
    assert opened["errors"] == {} and closed["errors"] == {}
    assert opened["latency_us"]["p99"] >= 100 * MS, opened["latency_us"]
    assert opened["latency_uncorrected_us"]["p50"] < opened["latency_us"]["p99"]
    assert abs(opened["throughput_rps"] - 1000) < 200  # a freeze at the end holds back <= 200
    assert closed["latency_us"]["p99"] < 100 * MS, closed["latency_us"]
    assert closed["latency_us"]["max"] >= 100 * MS, closed["latency_us"]


def test_open_loop_keeps_its_rate_and_reports_lag() -> None:
    with toy_server() as server:
        record = run_swarm(quick(server.target, mode="open", rate=1500, arrivals="poisson",
                                 duration=1.5))
    assert record["errors"] == {}
    assert abs(record["throughput_rps"] - 1500) < 150, record["throughput_rps"]
    assert record["schedule_lag_us"]["p50"] is not None
    assert record["latency_corrected"] is True
    assert record["latency_us"]["p50"] >= record["latency_uncorrected_us"]["p50"]


# ------------------------------------------------------------------ counts and the record


def test_counts_agree_with_the_server_and_the_record_is_complete() -> None:
    """Pipelined, mixed and verified: every reply the server sent is accounted for."""
    with toy_server() as server:
        record = run_swarm(quick(server.target, connections=6, workers=2, pipeline=4,
                                 mix="echo:64=3,echo:3000=1,work:50=1", verify=True))
        answered = wait_until(lambda: server.replies,
                              lambda n: n == record["totals"]["sent"], timeout=2.0)
    totals = record["totals"]
    assert record["errors"] == {}
    assert totals["lost_in_flight"] == 0
    assert totals["sent"] == totals["answered_ok"] == answered > 0
    assert 0 < record["requests"] <= totals["answered_ok"]
    assert sum(record["per_connection"]) == record["requests"]
    assert sum(item["requests"] for item in record["intervals"]) == record["requests"]
    assert set(RECORD_KEYS) <= set(record)
    assert set(record["latency_us"]) == LATENCY_KEYS
    assert set(record["connect_us"]) >= LATENCY_KEYS
    assert record["connect_us"]["count"] == record["connections_established"] == 6
    assert set(record["fairness"]) >= {"jain", "min_rps", "max_rps"}
    assert 0.5 < record["fairness"]["jain"] <= 1.0
    assert len(record["client"]["cpu_percent"]) == len(record["client"]["cpu_wait_percent"]) == 2
    assert isinstance(record["client"]["saturated"], bool)
    assert record["complete"] is True and record["stopped"] is None
    assert exit_status(record) == EXIT_OK
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    histogram.decode_and_add(record["histogram"])
    assert histogram.get_total_count() == record["requests"]
    assert json.loads(json.dumps(record)) == record


def test_errors_are_counted_by_kind() -> None:
    """Refused connections, an over-capacity turn-away, an ERROR reply, a wrong echo."""
    with contextlib.closing(socket.socket()) as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        refused = run_swarm(quick(f"127.0.0.1:{unused.getsockname()[1]}", connections=3))
    assert refused["errors"] == {"connect_refused": 3}
    assert refused["connections_established"] == 0
    assert exit_status(refused) == EXIT_CANNOT_RUN

    with one_shot_server(lambda frame_count: encode_response(
            Status.ERROR, ErrorValue.OVER_CAPACITY, b"over capacity"),
                         ) as target:
        over = run_swarm(quick(target, connections=2, duration=0.5))
    assert over["errors"] == {"over_capacity": 2}
    assert exit_status(over) == EXIT_ERRORS

    def wrong_then_error(frame_count: int) -> bytes:
        if frame_count == 1:
            return encode_response(Status.OK, 0, b"x" * 64)  # right length, wrong bytes
        return encode_response(Status.ERROR, ErrorValue.ARGUMENT_OUT_OF_RANGE,
                               b"argument out of range")

    with one_shot_server(wrong_then_error, replies=2) as target:
        odd = run_swarm(quick(target, connections=1, duration=0.5, timeout=0.5))
    assert odd["errors"]["mismatch"] == 1
    assert odd["errors"]["error_3"] == 1
    assert odd["errors"]["timeout"] == 1  # then the server goes quiet


@contextlib.contextmanager
def one_shot_server(reply: Callable[[int], bytes], replies: int = 1) -> Iterator[str]:
    """Each connection gets ``reply(n)`` for its first ``replies`` requests, then silence."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(sock)
            sock.settimeout(1.0)
            for count in range(1, replies + 1):
                with contextlib.suppress(OSError):
                    sock.recv(HEADER.size + 64)  # one request (echo:64 is one frame)
                    sock.sendall(reply(count))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(3.0)
        for sock in held:
            sock.close()


# ------------------------------------------------------------------ failure: never hang


def test_a_server_killed_mid_run_ends_the_swarm_promptly(tmp_path: Path) -> None:
    """Through the CLI: partial JSON written, exit status 1, well before --duration."""
    output = tmp_path / "record.json"
    with running_server("epoll") as server:
        command = [sys.executable, "-m", "clients", "swarm", "--target",
                   f"{server.host}:{server.port}", "--connections", "8", "--duration", "30",
                   "--warmup", "0.3", "--timeout", "2", "--json", str(output), "--quiet"]
        started = time.monotonic()
        swarm = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: _has_children(swarm.pid), bool, timeout=10.0)
            time.sleep(1.5)
            server.proc.kill()
            _, stderr = swarm.communicate(timeout=2.0 + 8.0)
        finally:
            if swarm.poll() is None:
                swarm.kill()
                swarm.wait()
    elapsed = time.monotonic() - started
    assert swarm.returncode == EXIT_ERRORS, stderr
    assert elapsed < 12.0
    record = json.loads(output.read_text())
    assert record["complete"] is False
    assert record["stopped"] == "no connection left"
    assert record["requests"] > 0
    assert set(record["errors"]) <= {"reset", "eof"} and sum(record["errors"].values()) == 8
    assert record["duration_s"] < 10.0


def _has_children(pid: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return bool(psutil.Process(pid).children())
    return False


def test_a_server_that_stops_answering_ends_the_swarm_within_timeout() -> None:
    with running_server("epoll") as server:
        timer = threading.Timer(1.5, os.kill, (server.pid, signal.SIGSTOP))
        timer.start()
        started = time.monotonic()
        try:
            record = run_swarm(SwarmConfig(target=f"{server.host}:{server.port}",
                                           connections=5, duration=30, warmup=0.2, timeout=1.0))
        finally:
            timer.cancel()
            os.kill(server.pid, signal.SIGCONT)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0 + 4.0  # freeze + timeout + start-up and a margin
    assert record["errors"] == {"timeout": 5}
    assert record["requests"] > 0 and record["complete"] is False


def test_ctrl_c_ends_with_partial_results_and_no_orphan(tmp_path: Path) -> None:
    output = tmp_path / "record.json"
    with toy_server() as server:
        swarm = subprocess.Popen(
            [sys.executable, "-m", "clients", "swarm", "--target", server.target,
             "--connections", "4", "--workers", "2", "--duration", "30", "--warmup", "0.2",
             "--json", str(output), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            children = wait_until(lambda: _children(swarm.pid), lambda c: len(c) >= 2,
                                  timeout=10.0)
            time.sleep(1.5)
            os.killpg(swarm.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            _, stderr = swarm.communicate(timeout=6.0)
        finally:
            if swarm.poll() is None:
                os.killpg(swarm.pid, signal.SIGKILL)
                swarm.wait()
    assert swarm.returncode == EXIT_ERRORS, stderr
    record = json.loads(output.read_text())
    assert record["stopped"] == "interrupted" and record["requests"] > 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                   for child in children)


def _children(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children()
    return []


# ------------------------------------------------------------------ settings and pieces


def test_impossible_settings_are_refused_clearly() -> None:
    for settings, words in [({"mode": "open"}, "--rate"),
                            ({"workers": 5, "connections": 4}, "--workers"),
                            ({"mix": "echo:64,jump:3"}, "jump"),
                            ({"duration": 0}, "--duration")]:
        with pytest.raises(SwarmError, match=words):
            run_swarm(SwarmConfig(target="127.0.0.1:1", **settings))  # type: ignore[arg-type]
    with pytest.raises(SwarmError, match="HOST:PORT"):
        parse_target("localhost")
    assert parse_target("[::1]:80") == ("::1", 80)


def test_cli_help_documents_exit_statuses_and_bad_arguments_exit_2() -> None:
    shown = subprocess.run([sys.executable, "-m", "clients", "swarm", "--help"],
                           capture_output=True, text=True, timeout=30, check=True)
    assert "exit status" in shown.stdout and "--connect-rate" in shown.stdout
    bad = subprocess.run([sys.executable, "-m", "clients", "swarm", "--target", "127.0.0.1:1",
                          "--mode", "open"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--rate" in bad.stderr


mix_entries = st.lists(
    st.builds(MixEntry,
              op=st.sampled_from(["echo", "work", "sleep"]),
              arg=st.integers(0, 10_000_000),
              weight=st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False)),
    min_size=1, max_size=6)


@given(mix_entries)
def test_mix_format_parses_back(entries: list[MixEntry]) -> None:
    parsed = parse_mix(format_mix(entries))
    assert [(e.op, e.arg) for e in parsed] == [(e.op, e.arg) for e in entries]
    for got, want in zip(parsed, entries, strict=True):
        assert math.isclose(got.weight, want.weight, rel_tol=1e-5)


@given(st.text(max_size=30))
def test_mix_parser_accepts_or_explains(spec: str) -> None:
    try:
        entries = parse_mix(spec)
    except MixError as error:
        assert str(error)
    else:
        assert entries and all(entry.weight > 0 for entry in entries)


@pytest.mark.parametrize("spec", ["", "echo", "echo:", "echo:-1", "echo:64=0", "echo:64=x",
                                  "work:10000001", "echo:64,,work:1", "echo:64=", "nap:3"])
def test_mix_parser_rejects(spec: str) -> None:
    with pytest.raises(MixError):
        parse_mix(spec)


def test_mix_parser_defaults_and_case() -> None:
    assert parse_mix(" ECHO:64 , work:1000=3,sleep:250=0.5") == [
        MixEntry("echo", 64, 1.0), MixEntry("work", 1000, 3.0), MixEntry("sleep", 250, 0.5)]


def test_kinds_predict_the_reply_bytes() -> None:
    echo = build_kind(MixEntry("echo", 100, 1), payload_seed=3)
    decoder = FrameDecoder()
    decoder.feed(echo.frame)
    request = decoder.next_frame()
    assert request is not None and request.code == Op.ECHO and len(request.payload) == 100
    assert echo.check == respond(request.code, request.value, request.payload).data
    verified = build_kind(MixEntry("work", 1000, 1), verify=True)
    assert verified.check == encode_response(Status.OK, work(b"", 1000))
    unverified = build_kind(MixEntry("work", 1000, 1))
    assert encode_response(Status.OK, 12345).startswith(unverified.check)
    refused = encode_response(Status.ERROR, ErrorValue.ARGUMENT_OUT_OF_RANGE, b"x")
    assert not refused.startswith(unverified.check)
    sequence = kind_sequence([9.0, 1.0], seed=1)
    assert 0.85 < sequence.count(0) / len(sequence) < 0.95


def test_jain_index() -> None:
    assert jain_index([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain_index([]) is None and jain_index([0.0, 0.0]) is None


def test_saturation_reasons() -> None:
    assert _cpu_reasons([95.0, 10.0], [0.0, 5.0]) == ["worker 0 at 95% CPU"]
    assert "oversubscribed" in _cpu_reasons([40.0], [55.0])[0]
    assert _cpu_reasons([40.0, None], [20.0, None]) == []

    def lags(*means: float) -> list[dict[str, float]]:
        return [{"client_lag_mean_us": m, "client_lag_max_us": 2 * m} for m in means]

    assert _client_lag(lags(80, 90, 85, 95))[1] is None  # steady and small: fine
    assert "grows" in (_client_lag(lags(50, 60, 700, 900))[1] or "")
    assert "late" in (_client_lag(lags(3000, 3100))[1] or "")
    summary, reason = _client_lag([{"client_lag_mean_us": None, "client_lag_max_us": None}])
    assert summary["mean"] is None and reason is None


def test_dedicated_connections_send_the_first_kind_and_the_rest_never_do() -> None:
    """``--dedicated``: the first busy connections (counted after the slowloris ones, which
    open before them) cycle through kind 0 alone, the other busy ones never draw it, and the
    held connections keep the whole mix."""
    kinds = tuple(build_kind(entry) for entry in parse_mix("work:1000,echo:64"))
    plan = WorkerPlan(index=1, family=socket.AF_INET, address=("127.0.0.1", 9), connections=3,
                      first_connection=10, mode="closed", pipeline=1, rate=0.0,
                      arrivals="constant", kinds=kinds, weights=(0.5, 0.5), connect_rate=0.0,
                      timeout_ns=10**9, interval_ns=10**9, seed=7, dedicated=1, slowloris=2,
                      slowloris_first=1, slowloris_interval_ns=10**9, slowloris_frame=b"xy")
    worker = make_worker(plan, Timeline(0, 0, 0, 1, 2))
    try:
        slow = next(h for h in worker.held if h.first)
        assert worker._sequence(12, None) == [0]  # the first busy connection
        for number in (13, 14):
            assert set(worker._sequence(number, None)) == {1}
        assert set(worker._sequence(10, slow)) == {0, 1}
    finally:
        worker.ep.close()
