"""The worker's measuring and scheduling pieces, without sockets: ``clients._measure`` and
``clients._schedule`` (samples folded after the window or in bounded chunks, the
same histograms either way; the client's lateness flagged when it is the tail)."""

from __future__ import annotations

import os
import random
from array import array

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import _measure
from clients._measure import HIST_HIGHEST_US, Bins, Measurements, Samples, new_histogram
from clients._schedule import NEVER, Schedule, set_timer_slack
from clients.record import LAG_TAIL_SHARE, lag_tail

nanoseconds = st.lists(st.integers(0, (HIST_HIGHEST_US + 10) * 1000), min_size=1,
                       max_size=300)


def recorded(samples: list[int]) -> HdrHistogram:
    """What HdrHistogram itself makes of nanosecond samples, one ``record_value`` each."""
    histogram = new_histogram()
    for value in samples:
        histogram.record_value(min(max((value + 500) // 1000, 1), HIST_HIGHEST_US))
    return histogram


@settings(max_examples=60, deadline=None)
@given(nanoseconds)
def test_vectorised_bins_count_as_hdrhistogram_does(samples: list[int]) -> None:
    bins = Bins()
    counts = bins.zeros()
    bins.add(counts, bins.index(np.array(samples, dtype=np.int64)))
    expected = recorded(samples)
    assert list(counts) == list(expected.counts)
    decoded = new_histogram()
    decoded.decode_and_add(bins.encode(counts))
    for percentile in (0, 50, 99, 100):
        assert decoded.get_value_at_percentile(percentile) == \
            expected.get_value_at_percentile(percentile)
    assert decoded.get_total_count() == len(samples)


def test_bincount_and_unique_paths_agree() -> None:
    bins = Bins()
    values = np.array([random.randrange(1, 10**9) for _ in range(10_000)], dtype=np.int64)
    index = bins.index(values)
    big, small = bins.zeros(), bins.zeros()
    bins.add(big, index)  # one np.bincount
    for start in range(0, len(index), 1000):  # np.unique, chunk by chunk
        bins.add(small, index[start:start + 1000])
    assert np.array_equal(big, small)


def fill(samples: Samples, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        samples.lat.append(rng.randrange(20_000, 5_000_000))
        samples.lat_u.append(rng.randrange(20_000, 500_000))
        samples.lag.append(rng.randrange(0, 100_000))
        samples.own_lag.append(rng.randrange(0, 50_000))


def run_intervals(samples: Samples, sizes: list[int], *, fold_budget: int = 0) -> None:
    for index, size in enumerate(sizes):
        fill(samples, size, seed=index)
        if size > 5:  # an interval in two segments
            samples.cut()
            fill(samples, 3, seed=100 + index)
        if fold_budget:
            samples.fold_some(fold_budget)
        samples.end_interval(duration_ns=1_000_000, errors=index)
    samples.fold_all()


def test_folding_in_chunks_gives_what_folding_at_the_end_gives() -> None:
    sizes = [500, 0, 3, 1200, 7]
    deferred, chunked = Samples(open_loop=True), Samples(open_loop=True)
    run_intervals(deferred, sizes)
    run_intervals(chunked, sizes, fold_budget=100)
    for name in ("lat", "lat_u", "lag", "own_lag"):
        assert deferred.encoded(name) == chunked.encoded(name)
    assert deferred.folded == chunked.folded
    assert [item["index"] for item in deferred.folded] == list(range(len(sizes)))
    assert [item["requests"] for item in deferred.folded] == [
        size + (3 if size > 5 else 0) for size in sizes]
    assert [item["errors"] for item in deferred.folded] == list(range(len(sizes)))
    empty = deferred.folded[1]
    assert empty["histogram"] is None and empty["lag_histogram"] is None
    first = deferred.folded[0]
    assert first["lag_count"] == 503 and 0 <= first["lag_max_ns"] < 50_000
    lag = new_histogram()
    lag.decode_and_add(first["lag_histogram"])
    assert lag.get_total_count() == 503
    assert deferred.backlog == chunked.backlog == 0


def test_nothing_is_folded_during_the_window_unless_the_backlog_is_large(
        monkeypatch: pytest.MonkeyPatch) -> None:
    measured = Measurements(open_loop=True, window_ns=0, interval_ns=10)
    measured.start_window(0)
    fill(measured.samples, 2000, seed=1)
    measured.end_interval(10)
    assert measured.tend(11) == NEVER and measured.samples.backlog == 8000  # left for later
    monkeypatch.setattr(_measure, "BACKLOG_SAMPLES", 1000)
    assert measured.tend(12) == 12 + _measure.FOLD_EVERY_NS  # folds, and wants to come back
    assert measured.samples.backlog == 8000 - _measure.FOLD_CHUNK
    while measured.samples.backlog > 1000:
        measured.tend(13)
    assert measured.tend(14) == NEVER


def test_a_long_segment_is_cut_during_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_measure, "SEGMENT_SAMPLES", 50)
    measured = Measurements(open_loop=False, window_ns=0, interval_ns=10)
    measured.start_window(0)
    first = measured.samples.lat
    first.extend(range(1000, 61_000, 1000))
    measured.tend(1)
    assert measured.samples.lat is not first and measured.samples.backlog == 60
    measured.samples.lat.append(5000)
    measured.end_interval(10)
    figures = measured.figures()
    assert figures["intervals"][0]["requests"] == 61
    assert figures["histogram_uncorrected"] is None  # closed loop: latency alone


def test_constant_and_poisson_schedules() -> None:
    constant = Schedule(start_ns=1000, end_ns=1000 + 10**9, rate=1000.0, arrivals="constant",
                        seed=1)
    due = [constant.next_ns] + [constant.advance() for _ in range(999)]
    assert due[:3] == [1000, 1000 + 1_000_000, 1000 + 2_000_000]
    assert due[-1] == 1000 + 999_000_000
    assert constant.advance() == NEVER  # the window is over
    poisson = Schedule(start_ns=0, end_ns=NEVER - 1, rate=10_000.0, arrivals="poisson", seed=2)
    times = [poisson.advance() for _ in range(20_000)]
    gaps = np.diff(times)
    assert (gaps > 0).all()
    assert 90_000 < gaps.mean() < 110_000  # 1/rate
    assert Schedule(0, 10, rate=0.0, arrivals="constant", seed=0).next_ns == NEVER


SLACK = "/proc/self/timerslack_ns"  # the main thread's, which the test runs on


@pytest.mark.skipif(not os.path.exists(SLACK), reason="no /proc timer slack (not Linux)")
def test_timer_slack_is_set() -> None:
    """Linux: the timer slack becomes what was asked (read back from /proc)."""
    with open(SLACK) as handle:
        before = int(handle.read())
    try:
        assert set_timer_slack(1)
        with open(SLACK) as handle:
            assert int(handle.read()) == 1
    finally:
        set_timer_slack(before)


def test_lag_tail_flags_a_client_whose_lateness_is_the_tail() -> None:
    latency = {"p99": 1200.0, "p99_9": 3000.0}
    fine = lag_tail(latency, {"p99": 60.0, "p99_9": 400.0}, requests=50_000)
    assert fine["flagged"] is False and "reason" not in fine
    assert fine["share_p99"] == pytest.approx(0.05)
    tail = lag_tail(latency, {"p99": 100.0, "p99_9": 0.8 * 3000.0}, requests=50_000)
    assert tail["flagged"] is True and tail["threshold_share"] == LAG_TAIL_SHARE
    assert "p99.9 2,400 of 3,000 µs (80%)" in tail["reason"]
    # p99.9 of 4,000 requests is four of them: not enough to call it the client's
    assert lag_tail(latency, {"p99": 100.0, "p99_9": 2400.0}, requests=4000)["flagged"] is False
    assert lag_tail(latency, {"p99": 900.0, "p99_9": 2400.0}, requests=4000)["flagged"] is True
    assert lag_tail({"p99": None, "p99_9": None}, {"p99": None, "p99_9": None}, 0)[
        "flagged"] is False


def test_connect_times_fold_once() -> None:
    bins = Bins()
    counts = _measure.fold(array("q", [1_000_000, 2_000_000, 2_000_400]), bins)
    histogram = bins.histogram(counts)
    assert histogram.get_total_count() == 3
    assert histogram.get_value_at_percentile(100) == 2000
