"""Overload: offered loads past each model's capacity, and what its goodput and tail do.

Open loop at 0.5, 1, 1.5 and 2 times each model's own closed-loop maximum (its capacity, the
group's closed case), over 64 connections, reported every half second. Goodput is the correct
replies per second over the window, as a share of capacity; a model degrades gracefully when it
keeps its goodput at 2x (at least ``KEEPS`` of its goodput at 1x) and collapses when it does
not. Past capacity the requests wait in the client's schedule, so the corrected p99 grows with
time: the tail's growth is its last half-second's p99 over its first.

This experiment reads the achieved rate and the corrected latency of trials the rate rule
(``bench/analysis/validity.py``: achieved more than 2 % off offered) leaves out of rankings: a
rate that cannot be kept is what it measures. It reads past the lag rule too (the client's send
lag over a quarter of the SLO): past capacity the requests wait in the client's schedule, which
is that lag, and the corrected latency counts them from when they were due. The steadiness
rule is allowed as well, though this group does not gate on it (``steady = false``). Failed
trials and every other rule still apply.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.analysis.frames import Run
from bench.classics.common import (
    NOT_MEASURABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    Published,
    group_rows,
    left_out,
    median,
    missing,
    rounded,
)

NAME = "overload"
GROUP = "overload"
PUBLISHED = Published(
    title="Overload: thread-per-task throughput collapses, an event loop degrades gracefully",
    source="Matt Welsh, David Culler, Eric Brewer, \"SEDA: An Architecture for "
           "Well-Conditioned, Scalable Internet Services\", SOSP 2001, figure 2",
    expectation="Past some load a thread-per-task server's throughput falls and its latency "
                "grows without bound; an event-driven server keeps its throughput.",
)
THREADS = ("threaded",)  # expected to collapse
LOOPS = ("epoll", "asyncio")  # expected to keep their goodput
KEEPS = 0.8  # goodput at 2x over goodput at 1x: at least this is "graceful"
GROWS = 2.0  # last interval's p99 over the first: the tail grows without bound
ALLOWED = {"rate", "lag", "unsteady"}  # what overload itself does to a trial, not a fault


def _usable(rows: pd.DataFrame) -> pd.DataFrame:
    """Trials whose only broken rules are the ones overload causes by design."""
    keep = [set(kinds.split() if isinstance(kinds, str) else ()) <= ALLOWED
            for kinds in rows["reason_kinds"]]
    return rows[keep]


def _trial(record: dict[str, Any]) -> dict[str, Any]:
    swarm = record.get("swarm") or {}
    intervals = [i for i in swarm.get("intervals") or [] if i.get("p99_us")]
    growth = (intervals[-1]["p99_us"] / intervals[0]["p99_us"]
              if len(intervals) > 1 and intervals[0]["p99_us"] else None)
    return {"goodput": swarm.get("throughput_rps"), "p99_us": swarm["latency_us"]["p99"],
            "growth": growth,
            "timeline": [[i["t_s"], i["throughput_rps"], i["p99_us"] / 1000] for i in intervals]}


def analyse(run: Run) -> Finding:
    rows = group_rows(run, GROUP)  # as recorded: see the module docstring
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    usable = _usable(rows[rows["status"] == "ok"])
    models: dict[str, Any] = {}
    chart: dict[str, Any] = {"kind": "overload", "x": "offered load (x capacity)",
                             "y": "goodput (x capacity)", "models": {}}
    for model, own in usable.groupby("variant"):
        capacity = median(own.loc[own["mode"] == "closed", "throughput_rps"])
        if not capacity:
            continue
        points, timelines = {}, {}
        for fraction, at in own[own["mode"] == "open"].groupby("offered_fraction"):
            trials = [_trial(run.trials[str(t)]) for t in at["trial_id"]]
            points[float(fraction)] = {
                "goodput_share": rounded(median(t["goodput"] / capacity for t in trials
                                                if t["goodput"]), 3),
                "p99_ms": rounded(median(t["p99_us"] / 1000 for t in trials), 1),
                "p99_growth": rounded(median(t["growth"] for t in trials
                                             if t["growth"] is not None), 2)}
            timelines[f"{float(fraction):g}"] = trials[0]["timeline"]
        threads = own.loc[own["offered_fraction"] == own["offered_fraction"].max(),
                          "threads_max"]
        models[str(model)] = {"capacity_rps": round(capacity), "loads": points,
                              "shape": _shape(points),
                              "server_threads_at_most": (int(threads.max()) if threads.notna().any()
                                                         else None)}
        chart["models"][str(model)] = {"goodput": [[f, p["goodput_share"]]
                                                   for f, p in sorted(points.items())],
                                       "timelines": timelines}
    verdict, reason = _verdict(models)
    return Finding(NAME, PUBLISHED, verdict, reason, measured={"models": models}, chart=chart,
                   left_out=left_out(rows))


def _shape(points: dict[float, dict[str, Any]]) -> str:
    """"graceful", "collapses" or "unknown" (no valid trial at 1x or 2x)."""
    at_one, at_two = points.get(1.0, {}).get("goodput_share"), points.get(2.0, {}).get(
        "goodput_share")
    if not at_one or at_two is None:
        return "unknown"
    return "graceful" if at_two >= KEEPS * at_one else "collapses"


def _words(model: str, facts: dict[str, Any]) -> str:
    loads = ", ".join(f"{f:g}x→{p['goodput_share']:.2f}" for f, p in sorted(facts["loads"].items())
                      if p["goodput_share"] is not None)
    growth = (facts["loads"].get(2.0) or {}).get("p99_growth")
    tail = f", p99 at 2x grew {growth:.1f}x over the window" if growth else ""
    return f"{model} {facts['shape']} (goodput ÷ capacity: {loads}{tail})"


def _verdict(models: dict[str, Any]) -> tuple[str, str]:
    known = {m: f for m, f in models.items() if f["shape"] != "unknown"}
    if not any(m in known for m in THREADS) or not any(m in known for m in LOOPS):
        return NOT_MEASURABLE, "no usable trials at 1x and 2x for threaded and an event loop"
    text = "; ".join(_words(m, f) for m, f in known.items())
    collapsed = [m for m in THREADS if m in known and known[m]["shape"] == "collapses"]
    graceful = [m for m in LOOPS if m in known and known[m]["shape"] == "graceful"]
    if len(collapsed) == len([m for m in THREADS if m in known]) and \
            len(graceful) == len([m for m in LOOPS if m in known]):
        return REPRODUCED, text
    why = []
    if not collapsed:
        threads = ", ".join(f"{m} ran at most {known[m]['server_threads_at_most']} threads"
                            for m in THREADS if m in known)
        why.append(f"The thread per connection kept its goodput: at 2x {threads}, one per "
                   "connection (and the main one), and the excess load waited in "
                   "the client's schedule, not in the server (SEDA's collapse came from a "
                   "thread per task, their number growing with the load)")
    if len(graceful) < len([m for m in LOOPS if m in known]):
        why.append("An event loop lost goodput past capacity")
    return NOT_REPRODUCED, f"{text}. " + "; ".join(why)
