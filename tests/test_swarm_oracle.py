"""The HdrHistogram stall oracle, run through the swarm's own open-loop recording path.

HdrHistogram's ``HistogramDataAccessTest`` records 10,000 results of 1 ms taken at a 10 ms
interval, then one 100 s stall. Corrected for coordinated omission (the requests that were due
during the stall but could not be sent), p50 is 1 ms, p75 50 s, p90 80 s and p99 98 s; the raw
histogram's p99.99 stays 1 ms, which is the trap.

Here a real swarm worker in open loop (``clients.worker.open_loop.OpenLoop``: one connection, one
request in flight, a constant schedule at 100 requests/s) is driven with a fake clock: the test
calls the worker's own ``_send_due`` (which stamps each request with its scheduled and its actual
send time) and ``_complete`` (which records latency from the scheduled send, corrected, and from
the actual send, raw) at the times a fake server answers, and reads the histograms the worker's
``Measurements`` fold. Nothing is scaled: the clock is fake, so 200 s take milliseconds. The fake
server answers the requests queued behind the stall at the instant the stall ends, which is what
HdrHistogram's correction assumes (``recordValueWithExpectedInterval``), so the swarm's corrected
histogram must hold exactly HdrHistogram's values. The socket is a real socketpair end the worker
never writes to (``_write`` is replaced): only recording is tested.
The hot loop's inline copy of ``_complete`` (``lat_append(now - c.scheds.popleft())``) is the
same arithmetic; tests/test_swarm.py covers it on real sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hdrh.histogram import HdrHistogram

from clients._measure import new_histogram
from clients.mix import build_kind, parse_mix
from clients.plan import Timeline, WorkerPlan
from clients.worker.conn import Conn
from clients.worker.open_loop import OpenLoop

MS = 1_000_000  # ns
S = 1_000 * MS
INTERVAL = 10 * MS
RESULTS = 10_000
STALL = 100 * S
START = 1 * S  # the fake clock starts here (any value: only differences matter)


@pytest.fixture
def worker() -> Iterator[OpenLoop]:
    kind = build_kind(parse_mix("echo:8")[0])
    # the schedule ends when the stall does: requests 0..19,999, as HdrHistogram's test has
    end = START + RESULTS * INTERVAL + STALL
    plan = WorkerPlan(index=0, family=socket.AF_UNIX, address=("",), connections=1,
                      first_connection=0, mode="open", pipeline=1, rate=1e9 / INTERVAL,
                      arrivals="constant", kinds=(kind,), weights=(1.0,), connect_rate=0.0,
                      timeout_ns=10**15, interval_ns=10**15, seed=1)
    timeline = Timeline(start_ns=START, load_ns=START, window_ns=START, end_ns=end,
                        drain_ns=end + S)
    w = OpenLoop(plan, timeline)
    w._write = lambda c, data: None  # type: ignore[method-assign]  # recording only
    yield w
    w.ep.close()


def drive(w: OpenLoop) -> None:
    """The fake clock: each request answered 1 ms after its send, the 10,001st after 100 s."""
    ours, theirs = socket.socketpair()
    try:
        c = Conn(ours, 0, [0], START)
        c.connected = True
        w.m.start_window(START)
        w.free.extend([c] * w.plan.pipeline)
        now = START
        answered = 0
        while True:
            due = w.schedule.next_ns
            if w.free:
                if due >= 1 << 62:
                    break
                now = max(now, due)
                w._send_due(now)
            service = 1 * MS if answered < RESULTS else STALL if answered == RESULTS else 0
            now += service
            if w.schedule.next_ns <= now:  # due while the one connection was busy
                w.schedule.waiting_until = now  # as the hot loop notes it
            w._complete(c, now)
            w._refill(c, 1, now)
            answered += 1
        w.m.end_interval(now)
    finally:
        ours.close()
        theirs.close()


def histograms(w: OpenLoop) -> tuple[HdrHistogram, HdrHistogram]:
    """The worker's corrected (from the schedule) and raw (from the send) histograms, in µs."""
    figures = w.m.figures()
    corrected, raw = new_histogram(), new_histogram()
    corrected.decode_and_add(figures["histogram"])
    raw.decode_and_add(figures["histogram_uncorrected"])
    return corrected, raw


def close(value: float, expected: float) -> bool:
    """Equal at HdrHistogram's 3 significant digits (what its own test allows)."""
    return abs(value - expected) <= expected * 1e-3


def test_stall_oracle_corrected_percentiles(worker: OpenLoop) -> None:
    drive(worker)
    corrected, _ = histograms(worker)
    assert corrected.get_total_count() == 2 * RESULTS
    for percentile, expected_us in ((50, 1_000), (75, 50_000_000), (90, 80_000_000),
                                    (99, 98_000_000)):
        value = corrected.get_value_at_percentile(percentile)
        assert close(value, expected_us), (percentile, value, expected_us)
    assert close(corrected.get_max_value(), 100_000_000)


def test_stall_oracle_raw_tail_hides_the_stall(worker: OpenLoop) -> None:
    drive(worker)
    _, raw = histograms(worker)
    assert close(raw.get_value_at_percentile(99.99), 1_000)
    assert close(raw.get_max_value(), 100_000_000)  # the stall itself: one sample


def test_swarm_correction_matches_hdrhistogram_own(worker: OpenLoop) -> None:
    """HdrHistogram's own ``record_corrected_value`` over the same results agrees everywhere."""
    drive(worker)
    corrected, _ = histograms(worker)
    reference = new_histogram()
    for _ in range(RESULTS):
        reference.record_corrected_value(1_000, INTERVAL // 1000)
    reference.record_corrected_value(STALL // 1000, INTERVAL // 1000)
    assert reference.get_total_count() == corrected.get_total_count()
    for percentile in (10, 50, 60, 75, 90, 95, 99, 99.9, 100):
        assert close(corrected.get_value_at_percentile(percentile),
                     reference.get_value_at_percentile(percentile)), percentile
