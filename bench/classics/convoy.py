"""The GIL's convoy: small requests behind one long computation, by model.

One connection keeps a WORK going (closed loop, ``--dedicated 1``) beside one that sends small
ECHOs, the server on one CPU; prefork is measured on both CPUs with eight ECHO connections
(bench/scenarios/classics.toml says why), and threaded there too, for comparison.
A thread that computes keeps CPython's GIL until another thread has waited the switch interval
(``sys.getswitchinterval()``, 5 ms by default) and asked for it, so an ECHO served by another
thread waits about that long: the convoy of bpo-7946. An event loop runs one callback at a
time, so an ECHO waits for the WORK to finish. Processes (prefork) do not share a GIL: with the
server on both CPUs, an ECHO served by the other worker does not wait at all.

The ECHOs' median latency is compared with those two yardsticks from the same run: the server
interpreter's switch interval (recorded by bench/run/interpreters.py) and the WORK's own
duration (its median latency under epoll, whose loop runs it uninterrupted).
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
    group_trials,
    interpreters,
    left_out,
    median,
    missing,
    rounded,
)

NAME = "convoy"
GROUP = "convoy"
PUBLISHED = Published(
    title="The GIL's convoy: small requests wait the switch interval behind a computing thread",
    source="CPython's switch interval (sys.getswitchinterval(), 5 ms; the new GIL of Python "
           "3.2); the convoy effect, bpo-7946 (David Beazley, \"Understanding the Python GIL\", "
           "PyCon 2010)",
    expectation="Beside a long WORK, an ECHO's latency is about the switch interval for a "
                "thread per connection or a thread pool, about the WORK's duration for an event "
                "loop, and unaffected for prefork with a core of its own.",
    numbers={"switch_interval_ms": 5.0},
)
THREADS = ("threaded", "threadpool")  # expected near the switch interval
LOOPS = ("asyncio", "epoll")  # expected near the WORK's duration
PROCESSES = ("prefork@2cpu",)  # expected far below both (on two CPUs)
TIMING_REFERENCE = "epoll"  # whose WORK median is the WORK's duration
NEAR = (0.5, 2.0)  # "about": within a factor of two
UNAFFECTED = 0.2  # "unaffected": below a fifth of the switch interval
DEFAULT_SWITCH_S = 0.005  # CPython's default, where the run did not record it


def kind_medians(record: dict[str, Any]) -> dict[str, float]:
    """Median latency (µs) of each request kind of a trial: ``{"work": ..., "echo": ...}``."""
    kinds = (record.get("swarm") or {}).get("latency_by_kind") or []
    return {str(k["kind"]).split(":")[0]: float(k["latency_us"]["p50"]) for k in kinds
            if (k.get("latency_us") or {}).get("p50") is not None}


def switch_interval_s(run: Run) -> tuple[float, str]:
    """The server interpreter's switch interval, and where the figure comes from."""
    for entry in interpreters(run):
        if entry.get("switch_interval_s"):
            return float(entry["switch_interval_s"]), "recorded in run.json"
    return DEFAULT_SWITCH_S, "CPython's default (the run did not record it)"


def label(model: str, cpus: int) -> str:
    """A model's name in the finding: ``threaded`` on the one CPU, ``threaded@2cpu`` on two."""
    return model if cpus <= 1 else f"{model}@{cpus}cpu"


def _medians(rows: pd.DataFrame, run: Run) -> dict[str, dict[str, float | None]]:
    """Per model and CPU count, the median over rounds of the ECHOs' and the WORK's median
    latency (µs), from trials whose latency validity kept."""
    per_model: dict[str, dict[str, list[float]]] = {}
    for row in rows.itertuples():
        if row.p50_us != row.p50_us:  # left out by validity
            continue
        kinds = kind_medians(run.trials[str(row.trial_id)])
        name = label(str(row.variant), int(row.server_cpu_count or 1))
        own = per_model.setdefault(name, {"echo": [], "work": []})
        for kind in own:
            if kind in kinds:
                own[kind].append(kinds[kind])
    return {model: {kind: median(values) for kind, values in kinds.items()}
            for model, kinds in per_model.items()}


def analyse(run: Run) -> Finding:
    rows = group_trials(run, GROUP)
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    switch_s, switch_from = switch_interval_s(run)
    medians = _medians(rows, run)
    work_us = (medians.get(TIMING_REFERENCE) or {}).get("work")
    measured: dict[str, Any] = {
        "switch_interval_ms": switch_s * 1000, "switch_interval_from": switch_from,
        "work_ms": rounded(work_us / 1000, 2) if work_us else None,
        "models": {m: {"echo_p50_ms": rounded(v["echo"] / 1000, 3) if v["echo"] else None,
                       "work_p50_ms": rounded(v["work"] / 1000, 2) if v["work"] else None}
                   for m, v in medians.items()},
        "free_threaded": "not run: the classics use the bench's interpreter; `make freethreaded` "
                         "builds 3.13t and `bench run --scenario interpreters` compares it"}
    verdict, reason = _verdict(measured, switch_s * 1e6, work_us)
    chart = {"kind": "bars_with_lines", "y": "ECHO median latency (ms)",
             "bars": {m: v["echo_p50_ms"] for m, v in measured["models"].items()},
             "lines": {"switch interval": switch_s * 1000,
                       "WORK duration": measured["work_ms"]}}
    return Finding(NAME, PUBLISHED, verdict, reason, measured=measured, chart=chart,
                   left_out=left_out(rows))


def _verdict(measured: dict[str, Any], switch_us: float,
             work_us: float | None) -> tuple[str, str]:
    models = measured["models"]
    if work_us is None:
        return NOT_MEASURABLE, f"no valid {TIMING_REFERENCE} trial: the WORK's duration is unknown"
    checks: list[tuple[str, float, float]] = []  # model, the ECHO median's low and high (µs)
    for model in THREADS:
        checks.append((model, NEAR[0] * switch_us, NEAR[1] * switch_us))
    for model in LOOPS:
        checks.append((model, NEAR[0] * work_us, NEAR[1] * work_us))
    for model in PROCESSES:
        checks.append((model, 0.0, UNAFFECTED * switch_us))
    words, wrong, absent = [], [], []
    for model, low, high in checks:
        echo_ms = (models.get(model) or {}).get("echo_p50_ms")
        if echo_ms is None:
            absent.append(model)
            continue
        words.append(f"{model} {echo_ms:g} ms")
        if not low <= echo_ms * 1000 <= high:
            wrong.append(f"{model} ({echo_ms:g} ms, expected {low / 1000:.2f}–{high / 1000:.2f})")
    summary = (f"ECHO median beside a {work_us / 1000:.1f} ms WORK (switch interval "
               f"{switch_us / 1000:g} ms): " + ", ".join(words))
    if absent and not words:
        return NOT_MEASURABLE, "no valid trial of " + ", ".join(absent)
    if wrong:
        return NOT_REPRODUCED, summary + "; outside the expected range: " + ", ".join(wrong)
    return REPRODUCED, summary + ("" if not absent else
                                  "; no valid trial of " + ", ".join(absent))
