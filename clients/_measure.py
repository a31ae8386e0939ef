"""What one swarm worker measures: latency samples, histograms, intervals, errors, CPU, record.

The worker's hot loops append nanosecond samples straight to the ``array('q')`` series here
(``lat``, ``lat_u``, ``lag``; they bind ``append`` to locals) and update the client's own
lateness figures (``lag_sum``, ``lag_count``, ``lag_max``); everything else about measuring
happens in these methods, outside the hot paths. Histograms are in microseconds.
"""

from __future__ import annotations

import resource
import time
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000  # one hour
HIST_DIGITS = 3

Progress = Callable[[int, int, int], None]  # (interval index, replies, errors)


def new_histogram() -> HdrHistogram:
    """The histogram every latency figure uses: 1 µs to 1 h, 3 significant digits."""
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


def fold(samples: array, *histograms: HdrHistogram) -> int:
    """Record nanosecond samples into histograms (in µs), empty ``samples``; return the count.

    Vectorised: equal microsecond values are recorded once with their count, so the cost is
    per distinct value, not per sample.
    """
    count = len(samples)
    if not count:
        return 0
    micros = (np.array(samples, dtype=np.int64) + 500) // 1000
    np.clip(micros, HIST_LOWEST_US, HIST_HIGHEST_US, out=micros)
    values, counts = np.unique(micros, return_counts=True)
    pairs = list(zip(values.tolist(), counts.tolist(), strict=True))
    for histogram in histograms:
        record = histogram.record_value
        for value, times in pairs:
            record(value, times)
    del samples[:]
    return count


def _encoded(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


class Errors:
    """Errors by kind (the idle connections' also on their own), error replies, lost requests."""

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = {}
        self.count = 0
        self.idle: dict[str, int] = {}
        self.responses = 0  # replies that were an ERROR or the wrong bytes
        self.lost = 0  # requests still in flight on a connection that was closed

    def add(self, kind: str, idle: bool = False) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.count += 1
        if idle:
            self.idle[kind] = self.idle.get(kind, 0) + 1


class CpuMeter:
    """The worker's CPU over the measured window, and its time waiting for a CPU."""

    def __init__(self) -> None:
        self._rusage: resource.struct_rusage | None = None
        self._wait: int | None = None
        self._wall = 0
        self.figures: dict[str, float | None] = {}

    def start(self, now: int) -> None:
        self._rusage = resource.getrusage(resource.RUSAGE_SELF)
        self._wait = _runqueue_wait_ns()
        self._wall = now

    def stop(self) -> None:
        if self._rusage is None:
            return
        end = resource.getrusage(resource.RUSAGE_SELF)
        wall = (time.monotonic_ns() - self._wall) / 1e9
        user = end.ru_utime - self._rusage.ru_utime
        system = end.ru_stime - self._rusage.ru_stime
        wait_end = _runqueue_wait_ns()
        waited = (wait_end - self._wait) / 1e9 if (
            wait_end is not None and self._wait is not None) else None
        self.figures = {"user_s": user, "system_s": system, "wall_s": wall,
                        "percent": 100.0 * (user + system) / wall if wall > 0 else 0.0,
                        "runqueue_wait_s": waited,
                        "wait_percent": 100.0 * waited / wall if waited is not None and wall > 0
                        else None}


def _runqueue_wait_ns() -> int | None:
    """Time this process has spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        with open("/proc/self/schedstat") as handle:
            return int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Measurements:
    """One worker's samples, histograms and per-interval figures over the measured window."""

    def __init__(self, open_loop: bool, window_ns: int, interval_ns: int,
                 progress: Progress | None = None) -> None:
        self.open_loop = open_loop
        self.window_ns = window_ns
        self.interval_ns = interval_ns
        self.progress = progress
        self.lat = array("q")  # corrected (open) or plain (closed) latencies, ns
        self.lat_u = array("q")  # open loop: from the actual send
        self.lag = array("q")  # open loop: actual send minus scheduled send
        self.connect_ns = array("q")
        self.hist = new_histogram()
        self.hist_u = new_histogram()
        self.hist_lag = new_histogram()
        self.hist_interval = new_histogram()
        self.lag_sum = 0  # the client's own lateness (fresh requests only), this interval
        self.lag_count = 0
        self.lag_max = 0
        self.errors = Errors()
        self.cpu = CpuMeter()
        self.intervals: list[dict[str, Any]] = []
        self.next_interval = window_ns  # the end of the current interval
        self.interval_index = 0
        self._interval_errors = 0
        self.window_end: int | None = None

    def start_window(self, now: int) -> None:
        """Warm-up is over: forget its samples; intervals count from here."""
        del self.lat[:]
        del self.lat_u[:]
        del self.lag[:]
        self.lag_sum = self.lag_count = self.lag_max = 0
        self._interval_errors = self.errors.count
        self.cpu.start(now)
        self.next_interval = self.window_ns + self.interval_ns

    def end_interval(self, until: int) -> None:
        """Fold this interval's samples into the histograms and note its figures."""
        start = self.window_ns + self.interval_index * self.interval_ns
        count = fold(self.lat, self.hist, self.hist_interval)
        fold(self.lat_u, self.hist_u)
        fold(self.lag, self.hist_lag)
        errors = self.errors.count - self._interval_errors
        self._interval_errors = self.errors.count
        self.intervals.append({
            "index": self.interval_index,
            "duration_ns": max(0, until - start),
            "requests": count,
            "errors": errors,
            "histogram": _encoded(self.hist_interval) if count else None,
            "lag_sum_ns": self.lag_sum,
            "lag_count": self.lag_count,
            "lag_max_ns": self.lag_max,
        })
        self.hist_interval.reset()
        self.lag_sum = self.lag_count = self.lag_max = 0
        if self.progress is not None:
            self.progress(self.interval_index, count, errors)
        self.interval_index += 1
        self.next_interval = start + 2 * self.interval_ns  # the end of the next one

    def end_window(self, now: int) -> None:
        """The window is over: nothing more is measured; take the CPU figures."""
        self.window_end = now
        self.cpu.stop()

    def histograms(self) -> dict[str, str | None]:
        """The window's encoded histograms (the connect times': every connect of the run)."""
        connect = new_histogram()
        fold(self.connect_ns, connect)
        return {
            "histogram": _encoded(self.hist),
            "histogram_uncorrected": _encoded(self.hist_u) if self.open_loop else None,
            "histogram_lag": _encoded(self.hist_lag) if self.open_loop else None,
            "connect_histogram": _encoded(connect),
        }
