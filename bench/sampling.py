"""Sampling the server: psutil figures of its whole process tree, and their summary.

``TreeSampler`` samples a process and all its descendants every 100 ms in a thread;
``summarize_server`` turns the samples into the figures of the swarm's measured window.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import psutil

from bench import procs

SAMPLE_INTERVAL_S = 0.1
EDGE_S = 0.005  # a sample this close outside the window's ends counts as at them


def sample_tree(pid: int, t: float) -> dict[str, Any] | None:
    """One psutil sample of a process and all its descendants, summed."""
    totals = {"t": round(t, 4), "cpu_user": 0.0, "cpu_system": 0.0, "rss": 0, "threads": 0,
              "fds": 0, "ctx_voluntary": 0, "ctx_involuntary": 0, "procs": 0}
    for proc in procs.tree(pid):
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

    def sample_now(self) -> None:
        sample = sample_tree(self.pid, time.monotonic() - self.t0)
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
            if self._take_due_marks(now - self.t0) or now >= next_at:
                self.sample_now()
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
    return summary


# -- derived figures -------------------------------------------------------------------------
