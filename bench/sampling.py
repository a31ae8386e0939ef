"""Sampling the server: psutil figures of its whole process tree, and their summary.

``TreeSampler`` samples a process and all its descendants every 100 ms in a thread;
``summarize_server`` turns the samples into the figures of the swarm's measured window.

CPU time from psutil (``/proc/PID/stat``) comes in scheduler ticks of 10 ms: over a window of
a few hundred milliseconds that is a few ticks, and a per-request figure made of it is a
multiple of one tick over the requests. So the samples taken at the window's edges (``mark``)
also read each process's CPU clock (``clock_getcpuclockid``: the scheduler's nanosecond run
time of all its threads, the ones that have exited included, the sum that each thread's
``/proc/PID/task/TID/schedstat`` shows for itself); the window's CPU is their difference
(``cpu_ns``). Where that clock cannot be read, the live threads' schedstat is summed instead (a
thread that ends inside the window then takes its time with it). The tick figures stay beside.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import psutil

from bench import procs

SAMPLE_INTERVAL_S = 0.1
EDGE_S = 0.005  # a sample this close outside the window's ends counts as at them


CPUCLOCK_SCHED = 2  # the kernel's process CPU clock that counts scheduler nanoseconds


def process_cpu_ns(pid: int) -> int | None:
    """Nanoseconds ``pid`` has run, all its threads (exited ones too); None if unreadable."""
    clock = ((~pid) << 3) | CPUCLOCK_SCHED  # clock_getcpuclockid(pid), as glibc makes it
    try:
        return time.clock_gettime_ns(clock)
    except OSError:
        return thread_cpu_ns(pid)


def thread_cpu_ns(pid: int) -> int | None:
    """Nanoseconds every live thread of ``pid`` has run (schedstat), summed; None if
    unreadable."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as handle:
                total += int(handle.read().split(None, 1)[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return total


def sample_tree(pid: int, t: float, precise: bool = False) -> dict[str, Any] | None:
    """One psutil sample of a process and all its descendants, summed; ``precise`` adds
    ``cpu_ns``, the threads' schedstat run time (the window's edges)."""
    totals = {"t": round(t, 4), "cpu_user": 0.0, "cpu_system": 0.0, "rss": 0, "threads": 0,
              "fds": 0, "ctx_voluntary": 0, "ctx_involuntary": 0, "procs": 0}
    cpu_ns: int | None = 0
    for proc in procs.tree(pid):
        if precise and cpu_ns is not None:
            ran = process_cpu_ns(proc.pid)
            cpu_ns = None if ran is None else cpu_ns + ran
        try:
            with proc.oneshot():
                cpu = proc.cpu_times()
                memory = proc.memory_info()
                threads = proc.num_threads()
                fds = proc.num_fds()
                ctx = proc.num_ctx_switches()
        except psutil.Error:
            continue
        totals["cpu_user"] += cpu.user + cpu.children_user
        totals["cpu_system"] += cpu.system + cpu.children_system
        totals["rss"] += memory.rss
        totals["threads"] += threads
        totals["fds"] += fds
        totals["ctx_voluntary"] += ctx.voluntary
        totals["ctx_involuntary"] += ctx.involuntary
        totals["procs"] += 1
    if precise and cpu_ns is not None:
        totals["cpu_ns"] = cpu_ns
    return totals if totals["procs"] else None


class TreeSampler(threading.Thread):
    """Samples a process tree every ``interval`` seconds until stopped, and at the moments
    ``mark`` names (the ends of the measured window: CPU over exactly the window)."""

    def __init__(self, pid: int, t0: float, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name=f"sampler-{pid}", daemon=True)
        self.pid, self.t0, self.interval = pid, t0, interval
        self.samples: list[dict[str, Any]] = []
        self._stopping = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._marks: list[float] = []  # trial times (s since t0) still to sample at

    def sample_now(self, precise: bool = False) -> None:
        sample = sample_tree(self.pid, time.monotonic() - self.t0, precise)
        if sample is not None:
            with self._lock:
                self.samples.append(sample)

    def mark(self, *times: float) -> None:
        """Also take a sample at each of these trial times (seconds since t0)."""
        with self._lock:
            self._marks = sorted([*self._marks, *times])
        self._wake.set()

    def _next_mark(self) -> float | None:
        with self._lock:
            return self._marks[0] if self._marks else None

    def _take_due_marks(self, now: float) -> bool:
        with self._lock:
            due = [t for t in self._marks if t <= now]
            self._marks = [t for t in self._marks if t > now]
        return bool(due)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            marked = self._take_due_marks(now - self.t0)
            if marked or now >= next_at:
                self.sample_now(precise=marked)
                if now >= next_at:
                    next_at = max(next_at + self.interval, now)
            wait = next_at - time.monotonic()
            mark = self._next_mark()
            if mark is not None:
                wait = min(wait, mark - (time.monotonic() - self.t0))
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def stop(self) -> None:
        """Stop sampling (a last sample is taken); idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self.is_alive():
            self.join(timeout=5)
        self.sample_now()


def held_connections(server: dict[str, Any]) -> int | None:
    """Connections the server held at its peak: its descriptors then, less those it had before
    any client (the first sample); None without samples."""
    samples = server.get("samples") or []
    if not samples or not isinstance(server.get("fds_max"), int):
        return None
    return max(0, server["fds_max"] - samples[0]["fds"])


def summarize_server(samples: list[dict[str, Any]], window: tuple[float, float],
                     idle_before: float) -> dict[str, Any]:
    """Server figures over the measured window (the samples inside it, or bracketing it)."""
    start, end = window
    # a sample taken on a mark lands just after its moment: it still counts as at the edge
    inside = [s for s in samples if start - EDGE_S <= s["t"] <= end + EDGE_S]
    if len(inside) < 2:
        before = [s for s in samples if s["t"] <= start] or samples[:1]
        after = [s for s in samples if s["t"] >= end] or samples[-1:]
        inside = [before[-1], *inside, after[0]] if before and after else inside
    idle = [s for s in samples if s["t"] <= idle_before]
    summary: dict[str, Any] = {
        "samples": samples, "window_s": [round(start, 4), round(end, 4)],
        "cpu_user_s": None, "cpu_system_s": None, "cpu_percent": None, "rss_max": None,
        "rss_mean": None, "rss_idle": idle[-1]["rss"] if idle else None, "threads_max": None,
        "fds_max": None, "ctx_switches": None, "span_s": None, "procs_max": None,
        "cpu_ns": None, "cpu_ns_span_s": None,
    }
    if len(inside) < 2 or inside[-1]["t"] <= inside[0]["t"]:
        return summary
    first, last = inside[0], inside[-1]
    span = last["t"] - first["t"]
    user = last["cpu_user"] - first["cpu_user"]
    system = last["cpu_system"] - first["cpu_system"]
    ctx = (last["ctx_voluntary"] + last["ctx_involuntary"]
           - first["ctx_voluntary"] - first["ctx_involuntary"])
    summary.update(
        cpu_user_s=user, cpu_system_s=system, cpu_percent=100.0 * (user + system) / span,
        rss_max=max(s["rss"] for s in inside), rss_mean=statistics.fmean(s["rss"] for s in inside),
        threads_max=max(s["threads"] for s in inside), fds_max=max(s["fds"] for s in inside),
        ctx_switches=ctx, span_s=span, procs_max=max(s["procs"] for s in inside))
    edges = [s for s in inside if "cpu_ns" in s]
    if len(edges) >= 2 and edges[-1]["t"] > edges[0]["t"]:
        summary.update(cpu_ns=edges[-1]["cpu_ns"] - edges[0]["cpu_ns"],
                       cpu_ns_span_s=edges[-1]["t"] - edges[0]["t"])
    return summary


# -- derived figures -------------------------------------------------------------------------
