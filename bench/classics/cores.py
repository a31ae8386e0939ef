"""Cores: CPU-bound WORK with the server on one CPU, then on both.

Processes (prefork) run Python on every core they are given; threads under the GIL and a single
event loop run it on one at a time. Two figures say so: the CPU the server used on two CPUs (in
cores: its processes' CPU clock over the window, bench/sampling.py), which is the mechanism, and
the scaling factor, the throughput on two CPUs over the throughput on one, paired within a
round. The factor carries the machine's speed from one trial to the next (a single loop at
100 % of one core has been seen here to vary 1.6x between rounds), so the verdict rests on the
cores used, with the factor beside it: a model scales when it used at least ``SCALES_AT_LEAST``
cores and its factor's median reached ``SCALES_AT_LEAST``; it stays at 1x when it used at most
``STAYS_BELOW`` cores. The swarm shares the second CPU with the server, but its load is light
next to the WORK (a few thousand requests a second).

The Universal Scalability Law has three parameters (λ, σ, κ): a fit needs more CPU counts than
this machine has, and the finding says so instead of fitting two points.
"""

from __future__ import annotations

import os
from typing import Any

from bench.analysis.frames import Run
from bench.classics.common import (
    NOT_MEASURABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    Published,
    by_round,
    group_trials,
    left_out,
    missing,
    paired,
    summary,
)

NAME = "cores"
GROUP = "cores"
PUBLISHED = Published(
    title="Cores: processes scale CPU-bound work, GIL threads and one event loop do not",
    source="David Beazley, \"Understanding the Python GIL\", PyCon 2010; PEP 703 (free "
           "threading); N. J. Gunther, the Universal Scalability Law (Guerrilla Capacity "
           "Planning, 2007)",
    expectation="With CPU-bound WORK and the server given both CPUs, prefork (and free-threaded "
                "threads) scale towards 2x; GIL threads and a single event loop stay at 1x.",
    numbers={"scaling_prefork": 2.0, "scaling_gil_threads": 1.0, "scaling_event_loop": 1.0},
)
SCALING = ("prefork",)  # expected towards 2x
SINGLE = ("threaded", "epoll", "asyncio")  # expected to stay at 1x
SCALES_AT_LEAST = 1.5  # "towards 2x": cores used, and the throughput factor's median
STAYS_BELOW = 1.2  # "stays at 1x": cores used on two CPUs
USL_MIN_POINTS = 4  # CPU counts a three-parameter fit needs, at the least


def analyse(run: Run) -> Finding:
    rows = group_trials(run, GROUP)
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    models: dict[str, Any] = {}
    for model, own in rows.groupby("variant"):
        one = by_round(own[own["server_cpu_count"] == 1], "throughput_rps")
        two = by_round(own[own["server_cpu_count"] == 2], "throughput_rps")
        cores_used = own.loc[own["server_cpu_count"] == 2, "server_cpu_percent"] / 100
        models[str(model)] = {"factor": summary(paired(two, one), 2),
                              "cores_used_2cpu": summary(list(cores_used.dropna()), 2),
                              "throughput_1cpu": summary(list(one.values()), 0),
                              "throughput_2cpu": summary(list(two.values()), 0)}
    counts = sorted({int(c) for c in rows["server_cpu_count"].dropna()})
    measured = {"models": models, "cpu_counts": counts,
                "usl": (f"not fitted: {len(counts)} CPU counts ({', '.join(map(str, counts))}) "
                        f"on a {os.cpu_count()}-CPU machine; the law's three parameters need "
                        f"{USL_MIN_POINTS} or more")}
    verdict, reason = _verdict(models)
    chart = {"kind": "scaling_bars", "y": "throughput on 2 CPUs ÷ on 1",
             "bars": {m: v["factor"] for m, v in models.items()},
             "lines": {"2x": 2.0, "1x": 1.0}}
    return Finding(NAME, PUBLISHED, verdict, reason, measured=measured, chart=chart,
                   left_out=left_out(rows))


def _verdict(models: dict[str, Any]) -> tuple[str, str]:
    factors = {m: v["factor"] for m, v in models.items() if v["factor"]["n"]}
    if not any(m in factors for m in SCALING) or not any(m in factors for m in SINGLE):
        return NOT_MEASURABLE, ("no paired rounds (1 and 2 CPUs) of prefork and of a "
                                "single-core model")
    used = {m: models[m]["cores_used_2cpu"]["median"] for m in factors}
    words = ", ".join(f"{m} {used[m]:.2f} cores, {f['median']:.2f}x [{f['low']:.2f}–"
                      f"{f['high']:.2f}]" for m, f in factors.items() if used[m] is not None)
    wrong = [m for m in SCALING if m in factors
             and (factors[m]["median"] < SCALES_AT_LEAST or (used[m] or 0) < SCALES_AT_LEAST)]
    wrong += [m for m in SINGLE if m in factors and (used[m] or 0) > STAYS_BELOW]
    text = ("on 2 CPUs, the server's CPU in cores and its throughput over 1 CPU, median "
            f"[range of rounds]: {words}")
    if wrong:
        return NOT_REPRODUCED, f"{text}; not as published: {', '.join(wrong)}"
    return REPRODUCED, (f"{text}; free-threaded threads were not run here (the classics use the "
                        "bench's interpreter, CPython with its GIL)")
