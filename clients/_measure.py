"""What one swarm worker measures: latency samples, histograms, intervals, errors, CPU.

Measuring never holds up a send (a late send would be charged to the server). During the
window the hot loops only append
nanosecond samples to the ``array('L')`` series here (8 bytes each; they bind ``append`` to
locals and bind again after each housekeeping pass, since a boundary starts fresh series), and
an interval boundary only closes the current segment of samples: O(1), whatever the rate.
Folding the samples into histograms (``Bins``: numpy straight into HdrHistogram count arrays)
waits until the window is over. Only a long run whose closed segments hold more than
``BACKLOG_SAMPLES`` folds during the window, ``FOLD_CHUNK`` samples (tens of µs) per
housekeeping pass, so that memory and the work left for the end stay bounded.

Series: ``lat`` (latency: from the scheduled send in open loop, corrected for coordinated
omission; from the send in closed loop), and in open loop ``lat_u`` (from the actual send),
``lag`` (actual minus scheduled send, every request) and ``own_lag`` (the same, only for
requests that had a free connection when due: the client's own lateness). Histograms are in µs.
A mix of several kinds also keeps ``kind<i>`` (the same latency as ``lat``, one series per
kind of the mix), appended on the mixed path only: a uniform mix's hot loops never see them.
Churn (a fresh connection per request) keeps, outside the series, the window's connect times
and cycles (connect start to the reply that ends the connection).
"""

from __future__ import annotations

import resource
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000  # one hour
HIST_DIGITS = 3
SEGMENT_SAMPLES = 1 << 16  # a segment of raw samples is closed at this length (512 KiB/series)
BACKLOG_SAMPLES = 1 << 22  # closed, unfolded samples (all series, 32 MiB) before folding starts
FOLD_CHUNK = 1024  # samples folded per housekeeping pass during the window (~30 µs)
FOLD_EVERY_NS = 1_000_000  # while folding during the window: a pass at least this often
BINCOUNT_FROM = 4096  # above this many samples, np.bincount beats sorting them (np.unique)
NEVER = 1 << 62
# The series' item type: unsigned 64-bit. Every sample is a difference of one monotonic clock,
# never negative, and appending to 'L' converts straight with PyLong_AsUnsignedLong where 'q'
# goes through PyArg_Parse: 40 vs 83 ns per append here, once per reply in the hot loops.
# Folding reads the bytes as int64 (the same bits below 2**63).
SAMPLE_TYPE = "L"
if array(SAMPLE_TYPE).itemsize != 8:  # C long is 64 bits wherever epoll is (LP64 Linux)
    SAMPLE_TYPE = "Q"

SERIES_CLOSED = ("lat",)
SERIES_OPEN = ("lat", "lat_u", "lag", "own_lag")

Progress = Callable[[int, int, int], None]  # (interval index, replies, errors)


def new_histogram() -> HdrHistogram:
    """The histogram every latency figure uses: 1 µs to 1 h, 3 significant digits."""
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


class Bins:
    """HdrHistogram's bucket arithmetic, vectorised: nanosecond samples into dense counts.

    ``index`` is ``HdrHistogram._counts_index_for`` over a numpy array (microseconds rounded
    to the nearest and clipped to the range, as the swarm always recorded them); a dense
    count array of ``length`` entries becomes an encoded histogram through ``encode``.
    """

    def __init__(self) -> None:
        template = new_histogram()
        self.length = template.counts_len
        self._unit = template.unit_magnitude
        self._half_magnitude = template.sub_bucket_half_count_magnitude
        self._half = template.sub_bucket_half_count
        self._mask = template.sub_bucket_mask
        self._scratch = template  # encodes one dense array after another

    def zeros(self) -> np.ndarray:
        return np.zeros(self.length, dtype=np.uint64)

    def index(self, nanoseconds: np.ndarray) -> np.ndarray:
        """The counts-array index of every sample."""
        micros = (nanoseconds + 500) // 1000
        np.clip(micros, HIST_LOWEST_US, HIST_HIGHEST_US, out=micros)
        # bit length (exact: every value is below 2**53) minus the sub-bucket bits
        bucket = np.frexp((micros | self._mask).astype(np.float64))[1] - (
            self._unit + self._half_magnitude + 1)
        sub_bucket = micros >> (bucket + self._unit)
        return ((bucket + 1) << self._half_magnitude) + sub_bucket - self._half

    def add(self, counts: np.ndarray, index: np.ndarray) -> None:
        """Count every index once into ``counts``."""
        if len(index) >= BINCOUNT_FROM:
            counts += np.bincount(index, minlength=self.length).astype(np.uint64)
        elif len(index):
            where, times = np.unique(index, return_counts=True)
            counts[where] += times.astype(np.uint64)

    def histogram(self, counts: np.ndarray, into: HdrHistogram | None = None) -> HdrHistogram:
        """An HdrHistogram holding ``counts`` (``into``'s own counts replaced, if given)."""
        histogram = into if into is not None else new_histogram()
        np.ctypeslib.as_array(histogram.counts)[:] = counts
        nonzero = np.flatnonzero(counts)
        if len(nonzero):
            histogram.set_internal_tacking_values(int(nonzero[0]), int(nonzero[-1]),
                                                  int(counts.sum()))
        else:
            histogram.total_count, histogram.min_value, histogram.max_value = 0, sys.maxsize, 0
        return histogram

    def encode(self, counts: np.ndarray) -> str:
        return self.histogram(counts, self._scratch).encode().decode("ascii")


def mean_value(histogram: HdrHistogram) -> float:
    """``histogram.get_mean_value()``, to the same number, vectorised: each recorded bucket's
    count times its median equivalent value, over the total count. hdrh's own walks every
    bucket in Python: 0.1-0.3 s per histogram of a few thousand buckets, several per record,
    after every run (it was most of a bench trial's cost beyond its load)."""
    if not histogram.total_count:
        return 0.0
    counts = np.ctypeslib.as_array(histogram.counts)[:histogram.counts_len]
    index = np.flatnonzero(counts)
    half_magnitude, half = histogram.sub_bucket_half_count_magnitude, \
        histogram.sub_bucket_half_count
    unit = histogram.unit_magnitude
    # get_value_from_index: the lowest value of each bucket
    bucket = (index >> half_magnitude) - 1
    sub_bucket = (index & (half - 1)) + half
    low = bucket < 0
    sub_bucket[low] -= half
    bucket[low] = 0
    lowest = sub_bucket << (bucket + unit)
    # _hdr_size_of_equiv_value_range of that value (bit lengths exact: values below 2**53)
    size_bucket = np.frexp((lowest | histogram.sub_bucket_mask).astype(np.float64))[1] - (
        unit + half_magnitude + 1)
    size_bucket += (lowest >> (size_bucket + unit)) >= histogram.sub_bucket_count
    median = lowest + ((np.int64(1) << (unit + size_bucket)) >> 1)
    total = int(np.dot(counts[index].astype(np.int64), median.astype(np.int64)))
    return float(total) / histogram.total_count


def fold(samples: array, bins: Bins) -> np.ndarray:
    """Nanosecond samples as a dense count array (for one-off series: connect times)."""
    counts = bins.zeros()
    bins.add(counts, bins.index(np.array(samples, dtype=np.int64)))
    return counts


class _Interval:
    """An interval's figures as its segments are folded; ``figures()`` once all are."""

    __slots__ = ("index", "duration_ns", "requests", "errors", "closed", "latency", "lag",
                 "lag_sum", "lag_count", "lag_max", "unfolded")

    def __init__(self, index: int) -> None:
        self.index = index
        self.duration_ns = 0
        self.requests = 0
        self.errors = 0
        self.closed = False  # its end has come: no more segments
        self.unfolded = 0  # its segments not folded yet
        self.latency: np.ndarray | None = None  # dense counts, from the first fold on
        self.lag: np.ndarray | None = None  # the client's own lateness, likewise
        self.lag_sum = self.lag_count = self.lag_max = 0

    def figures(self, bins: Bins) -> dict[str, Any]:
        return {
            "index": self.index, "duration_ns": self.duration_ns, "requests": self.requests,
            "errors": self.errors,
            "histogram": bins.encode(self.latency) if self.latency is not None else None,
            "lag_sum_ns": self.lag_sum, "lag_count": self.lag_count, "lag_max_ns": self.lag_max,
            "lag_histogram": bins.encode(self.lag) if self.lag is not None else None,
        }


class _Segment:
    """Raw samples of one interval (or of a part of a long one), and how far they are folded."""

    __slots__ = ("interval", "series", "at_series", "at_sample")

    def __init__(self, interval: _Interval, series: dict[str, array]) -> None:
        self.interval = interval
        self.series = series
        self.at_series = 0  # the series being folded (index into its names)
        self.at_sample = 0  # the next sample of it to fold


def kind_series(kinds: int) -> tuple[str, ...]:
    """The per-kind latency series of a mix of ``kinds`` kinds (none for a uniform mix)."""
    return tuple(f"kind{index}" for index in range(kinds)) if kinds > 1 else ()


class Samples:
    """The window's raw samples, segment by segment, and their folding into histograms."""

    def __init__(self, open_loop: bool, kinds: int = 1) -> None:
        self.base_names = SERIES_OPEN if open_loop else SERIES_CLOSED
        self.kind_names = kind_series(kinds)
        self.names = self.base_names + self.kind_names
        self.bins = Bins()
        self.totals = {name: self.bins.zeros() for name in self.names}
        self._segments: deque[_Segment] = deque()  # closed, not yet folded, oldest first
        self._intervals: deque[_Interval] = deque([_Interval(0)])  # the current one last
        self.folded: list[dict[str, Any]] = []  # every finished interval's figures, in order
        self.backlog = 0  # samples in closed segments
        self._fresh()

    def _fresh(self) -> None:
        """New, empty series for the hot loops to append to."""
        self.lat, self.lat_u, self.lag, self.own_lag = (
            array(SAMPLE_TYPE), array(SAMPLE_TYPE), array(SAMPLE_TYPE), array(SAMPLE_TYPE))
        # by the mix's kind index: the mixed path appends each reply's latency here too
        self.by_kind = [array(SAMPLE_TYPE) for _ in self.kind_names]

    def discard(self) -> None:
        """Forget the samples so far (the warm-up's, or the drain's)."""
        self._fresh()

    @property
    def current(self) -> int:
        """The index of the interval being measured."""
        return self._intervals[-1].index

    def cut(self) -> None:
        """Close the current segment (O(1)): its samples wait to be folded."""
        series = {name: getattr(self, name) for name in self.base_names}
        series.update(zip(self.kind_names, self.by_kind, strict=True))
        self._fresh()
        interval = self._intervals[-1]
        interval.requests += len(series["lat"])
        size = sum(len(samples) for samples in series.values())
        if size:
            self._segments.append(_Segment(interval, series))
            interval.unfolded += 1
            self.backlog += size

    def end_interval(self, duration_ns: int, errors: int) -> int:
        """Close the current interval (the next one starts); its latency sample count."""
        self.cut()
        interval = self._intervals[-1]
        interval.duration_ns, interval.errors, interval.closed = duration_ns, errors, True
        self._intervals.append(_Interval(interval.index + 1))
        self._finish_ready()
        return interval.requests

    def fold_some(self, budget: int) -> None:
        """Fold at most ``budget`` samples of the oldest closed segments."""
        while budget > 0 and self._segments:
            segment = self._segments[0]
            budget -= self._fold_step(segment, budget)
            if segment.at_series >= len(self.names):
                self._segments.popleft()
                segment.interval.unfolded -= 1
                self._finish_ready()

    def fold_all(self) -> None:
        """Fold everything closed (after the window: no budget)."""
        self.fold_some(NEVER)

    def _fold_step(self, segment: _Segment, budget: int) -> int:
        """Fold up to ``budget`` samples of one series of ``segment``; how much budget it took."""
        name = self.names[segment.at_series]
        samples = segment.series[name]
        start = segment.at_sample
        take = min(budget, len(samples) - start)
        if take > 0:
            chunk = np.frombuffer(samples, dtype=np.int64, count=take, offset=8 * start)
            self._fold_chunk(name, chunk, segment.interval)
            del chunk  # no buffer export left behind
        segment.at_sample = start + take
        if segment.at_sample >= len(samples):
            segment.at_series += 1
            segment.at_sample = 0
            segment.series[name] = array(SAMPLE_TYPE)  # folded: free it now
        self.backlog -= take
        return max(take, 1)

    def _fold_chunk(self, name: str, chunk: np.ndarray, interval: _Interval) -> None:
        bins = self.bins
        index = bins.index(chunk)
        bins.add(self.totals[name], index)
        if name == "lat":
            if interval.latency is None:
                interval.latency = bins.zeros()
            bins.add(interval.latency, index)
        elif name == "own_lag":
            if interval.lag is None:
                interval.lag = bins.zeros()
            bins.add(interval.lag, index)
            interval.lag_sum += int(chunk.sum())
            interval.lag_count += len(chunk)
            interval.lag_max = max(interval.lag_max, int(chunk.max()))

    def _finish_ready(self) -> None:
        """The figures of the oldest intervals that are closed and folded, in order (O(1)
        when there are none: every interval waits for those before it)."""
        intervals = self._intervals
        while intervals[0].closed and not intervals[0].unfolded:
            self.folded.append(intervals.popleft().figures(self.bins))

    def encoded(self, name: str) -> str | None:
        return self.bins.encode(self.totals[name]) if name in self.totals else None


class Errors:
    """Errors by kind (the idle connections' also on their own), error replies, lost requests.

    The slowloris connections' errors are kept apart and only there: those connections are the
    attack, and a server turning them away (or timing them out) is a figure of its own, not a
    failed request of the connections being measured."""

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = {}
        self.count = 0
        self.idle: dict[str, int] = {}
        self.slow: dict[str, int] = {}
        self.responses = 0  # replies that were an ERROR or the wrong bytes
        self.lost = 0  # requests still in flight on a connection that was closed

    def add(self, kind: str, held: str | None = None) -> None:
        """Count an error of a busy connection (``held`` None), an idle one or a slow one."""
        if held == "slow":
            self.slow[kind] = self.slow.get(kind, 0) + 1
            return
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.count += 1
        if held == "idle":
            self.idle[kind] = self.idle.get(kind, 0) + 1

    def held(self, label: str) -> dict[str, int]:
        """The errors of the idle (``"idle"``) or slow (``"slow"``) connections, by kind."""
        return self.slow if label == "slow" else self.idle


class CpuMeter:
    """The worker's CPU over the measured window, its time waiting for a CPU, and its spin.

    ``spin_ns`` is kept up to date by the open loop: time spent polling on purpose until a
    send fell due, because the wait was shorter than a wake-up. It is CPU the client chose to
    spend, not work it needed: ``percent`` leaves it out (so it cannot flag the client as
    saturated) and ``spin_percent`` says how much it was.
    """

    def __init__(self) -> None:
        self._rusage: resource.struct_rusage | None = None
        self._wait: int | None = None
        self._wall = 0
        self._spin = 0
        self.spin_ns = 0
        self.figures: dict[str, float | None] = {}

    def start(self, now: int) -> None:
        self._rusage = resource.getrusage(resource.RUSAGE_SELF)
        self._wait = _runqueue_wait_ns()
        self._wall = now
        self._spin = self.spin_ns

    def stop(self) -> None:
        if self._rusage is None:
            return
        end = resource.getrusage(resource.RUSAGE_SELF)
        wall = (time.monotonic_ns() - self._wall) / 1e9
        user = end.ru_utime - self._rusage.ru_utime
        system = end.ru_stime - self._rusage.ru_stime
        spin = min((self.spin_ns - self._spin) / 1e9, user + system)
        wait_end = _runqueue_wait_ns()
        waited = (wait_end - self._wait) / 1e9 if (
            wait_end is not None and self._wait is not None) else None
        self.figures = {
            "user_s": user, "system_s": system, "wall_s": wall, "spin_s": spin,
            "percent": 100.0 * (user + system - spin) / wall if wall > 0 else 0.0,
            "spin_percent": 100.0 * spin / wall if wall > 0 else 0.0,
            "runqueue_wait_s": waited,
            "wait_percent": 100.0 * waited / wall if waited is not None and wall > 0 else None}


def _runqueue_wait_ns() -> int | None:
    """Time this process has spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        with open("/proc/self/schedstat") as handle:
            return int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Measurements:
    """One worker's measured window: samples, intervals, errors, connect times and CPU."""

    def __init__(self, open_loop: bool, window_ns: int, interval_ns: int,
                 progress: Progress | None = None, kinds: int = 1) -> None:
        self.open_loop = open_loop
        self.window_ns = window_ns
        self.interval_ns = interval_ns
        self.progress = progress
        self.samples = Samples(open_loop, kinds)
        self.connect_ns = array("q")
        # churn, the window's only (the warm-up's connects are not the steady state)
        self.churn_connect_ns = array("q")  # connect() to established, each new connection
        self.churn_cycle_ns = array("q")  # connect() to the reply that ends the connection
        self.errors = Errors()
        self.cpu = CpuMeter()
        self.next_interval = window_ns  # the end of the current interval
        self._interval_errors = 0
        self.window_end: int | None = None
        self._next_fold = NEVER

    def start_window(self, now: int) -> None:
        """Warm-up is over: forget its samples; intervals count from here."""
        self.samples.discard()
        self._interval_errors = self.errors.count
        self.cpu.start(now)
        self.next_interval = self.window_ns + self.interval_ns

    def end_interval(self, until: int) -> None:
        """Close this interval (its samples are folded later) and report progress."""
        index = self.samples.current
        start = self.window_ns + index * self.interval_ns
        errors = self.errors.count - self._interval_errors
        self._interval_errors = self.errors.count
        count = self.samples.end_interval(max(0, until - start), errors)
        if self.progress is not None:
            self.progress(index, count, errors)
        self.next_interval = start + 2 * self.interval_ns  # the end of the next one

    def end_window(self, now: int) -> None:
        """The window is over: nothing more is measured; take the CPU figures."""
        self.window_end = now
        self.cpu.stop()
        self.samples.discard()  # the drain's replies are not measured
        self._next_fold = NEVER

    def tend(self, now: int) -> int:
        """Bounded upkeep during the window: close a long segment, fold a chunk if the
        backlog is too large. When it next wants to run (``NEVER``: not on its own account)."""
        samples = self.samples
        if len(samples.lat) >= SEGMENT_SAMPLES or len(samples.lag) >= SEGMENT_SAMPLES:
            samples.cut()
        if samples.backlog > BACKLOG_SAMPLES:
            samples.fold_some(FOLD_CHUNK)
            self._next_fold = now + FOLD_EVERY_NS
        else:
            self._next_fold = NEVER
        return self._next_fold

    def figures(self) -> dict[str, Any]:
        """Fold what is left, then the worker's histograms and intervals (after the run)."""
        samples = self.samples
        samples.fold_all()
        bins = samples.bins
        return {
            "histogram": samples.encoded("lat"),
            "histogram_uncorrected": samples.encoded("lat_u"),
            "histogram_lag": samples.encoded("lag"),
            "histogram_own_lag": samples.encoded("own_lag"),
            "connect_histogram": bins.encode(fold(self.connect_ns, bins)),
            "intervals": samples.folded,
            "histograms_by_kind": [samples.encoded(name) for name in samples.kind_names]
            or None,
            "churn": self._churn(bins) if self.churn_connect_ns or self.churn_cycle_ns
            else None,
        }

    def _churn(self, bins: Bins) -> dict[str, Any]:
        return {"cycles": len(self.churn_cycle_ns),
                "connect_histogram": bins.encode(fold(self.churn_connect_ns, bins)),
                "cycle_histogram": bins.encode(fold(self.churn_cycle_ns, bins))}
