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
    """Samples a process tree every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, t0: float, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name=f"sampler-{pid}", daemon=True)
        self.pid, self.t0, self.interval = pid, t0, interval
        self.samples: list[dict[str, Any]] = []
        self._stop_event = threading.Event()

    def sample_now(self) -> None:
        sample = sample_tree(self.pid, time.monotonic() - self.t0)
        if sample is not None:
            self.samples.append(sample)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            self.sample_now()
            next_at += self.interval
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample_now()


def summarize_server(samples: list[dict[str, Any]], window: tuple[float, float],
                     idle_before: float) -> dict[str, Any]:
    """Server figures over the measured window (the samples inside it, or bracketing it)."""
    start, end = window
    inside = [s for s in samples if start <= s["t"] <= end]
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
