"""Coordinated omission: the server stopped inside the window, seen with and without correction.

An open-loop client that measures from each request's scheduled time (the swarm's corrected
histogram) counts the requests the pause kept it from sending; one that measures from the
actual send (the uncorrected histogram, as a closed-loop tool would) sees only the few requests
caught in flight. Requests scheduled during a pause of P seconds at R per second number R·P
and wait from their schedule to the pause's end, so the corrected latency exceeds a threshold
T for R·(P−T) of the window's N requests: the corrected spectrum jumps at the percentile
1 − R·(P−T)/N. The runner stops the server with SIGSTOP and continues it with SIGCONT
(bench/run/trial.py); the record's ``pause`` says when and for how long it was stopped.
Every trial that ran to the end (status ok) is read, whatever the validity rules say of it:
the pause is what they would judge (a client lagging its schedule, a tail of requests caught
in it).
"""

from __future__ import annotations

from typing import Any

from bench.analysis.frames import Run
from bench.analysis.histograms import decode_histogram, percentile_curve
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

NAME = "omission"
GROUP = "omission"
PUBLISHED = Published(
    title="Coordinated omission: a corrected p99 shows the pause, an uncorrected one hides it",
    source="Gil Tene, \"How NOT to Measure Latency\" (2013-2015), and wrk2's README "
           "(github.com/giltene/wrk2): 2,000 requests/s over 100 connections, the server "
           "stopped for a moment",
    expectation="The corrected p99 jumps to about the pause while the uncorrected one stays in "
                "milliseconds; the corrected distribution's jump sits near the percentile the "
                "pause predicts (rate × pause ÷ samples).",
    numbers={"rate_per_s": 2000, "connections": 100, "pause_s": 1.4},
)
THRESHOLD_SHARE = 0.1  # T: a tenth of the pause (far above a served request, far below P)
NEAR_PAUSE = 0.5  # the corrected p99 at half the pause or more: "about the pause"
MILLISECONDS = 0.05  # the uncorrected p99 under a twentieth of the pause: "milliseconds"
JUMP_TOLERANCE = 0.05  # the measured jump within 5 percentage points of the prediction (the
# prediction leaves out the backlog's drain after the pause, which adds a few more late requests)


def share_above(swarm: dict[str, Any], key: str, threshold_us: float) -> tuple[float, int]:
    """The share of a histogram's samples above ``threshold_us``, and its sample count."""
    decoded = decode_histogram(swarm, key)
    if decoded is None:
        return float("nan"), 0
    histogram, scale = decoded
    total = histogram.get_total_count()
    above = sum(item.count_at_value_iterated_to for item in histogram.get_recorded_iterator()
                if histogram.get_highest_equivalent_value(item.value_iterated_to) * scale
                > threshold_us)
    return above / total, total


def trial_figures(record: dict[str, Any]) -> dict[str, Any] | None:
    """One trial's corrected and uncorrected p99, and its jump: predicted and measured."""
    swarm, pause = record.get("swarm") or {}, record.get("pause") or {}
    rate, seconds = record.get("rate"), pause.get("s")
    if not swarm or not rate or not seconds:
        return None
    threshold = THRESHOLD_SHARE * seconds * 1e6
    share, samples = share_above(swarm, "histogram", threshold)
    if not samples:
        return None
    predicted = rate * seconds * (1 - THRESHOLD_SHARE) / samples
    return {"trial": record.get("trial_id"), "pause_s": seconds, "pause_at_s": pause.get("at_s"),
            "samples": samples, "threshold_ms": threshold / 1000,
            "p99_corrected_ms": swarm["latency_us"]["p99"] / 1000,
            "p99_uncorrected_ms": swarm["latency_uncorrected_us"]["p99"] / 1000,
            "jump_percentile_predicted": round(100 * (1 - predicted), 2),
            "jump_percentile_measured": round(100 * (1 - share), 2)}


def analyse(run: Run) -> Finding:
    rows = group_rows(run, GROUP)  # as recorded: the figures are read from the trials' records
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    trials = [run.trials[str(t)] for t, status in zip(rows["trial_id"], rows["status"],
                                                       strict=True) if status == "ok"]
    measured_trials = [(t, f) for t in trials if (f := trial_figures(t)) is not None]
    figures = [f for _t, f in measured_trials]
    if not figures:
        return Finding(NAME, PUBLISHED, NOT_MEASURABLE,
                       "no trial with a recorded pause and a corrected histogram",
                       left_out=left_out(rows))
    measured = {"trials": figures, **{key: rounded(median(f[key] for f in figures), 2)
                                      for key in ("p99_corrected_ms", "p99_uncorrected_ms",
                                                  "jump_percentile_predicted",
                                                  "jump_percentile_measured")}}
    verdict, reason = _verdict(figures)
    return Finding(NAME, PUBLISHED, verdict, reason, measured=measured,
                   chart=_chart(measured_trials[0][0]), left_out=left_out(rows))


def _chart(record: dict[str, Any]) -> dict[str, Any]:
    """The spectra of the first trial with figures, corrected and uncorrected (percentile,
    ms)."""
    lines = {}
    for key, label in (("histogram", "corrected"), ("histogram_uncorrected", "uncorrected")):
        decoded = decode_histogram(record.get("swarm"), key)
        if decoded is not None:
            levels, values = percentile_curve(*decoded)
            lines[label] = [[round(float(q), 6), round(float(v) / 1000, 3)]
                            for q, v in zip(levels, values, strict=True)]
    return {"kind": "spectrum", "x": "percentile", "y": "latency (ms)", "lines": lines,
            "pause_ms": ((record.get("pause") or {}).get("s") or 0) * 1000}


def _verdict(figures: list[dict[str, Any]]) -> tuple[str, str]:
    wrong = []
    for f in figures:
        pause_ms = f["pause_s"] * 1000
        if f["p99_corrected_ms"] < NEAR_PAUSE * pause_ms:
            wrong.append(f"{f['trial']}: corrected p99 {f['p99_corrected_ms']:.0f} ms")
        if f["p99_uncorrected_ms"] > MILLISECONDS * pause_ms:
            wrong.append(f"{f['trial']}: uncorrected p99 {f['p99_uncorrected_ms']:.0f} ms")
        gap = abs(f["jump_percentile_measured"] - f["jump_percentile_predicted"]) / 100
        if gap > JUMP_TOLERANCE:
            wrong.append(f"{f['trial']}: jump at p{f['jump_percentile_measured']} against "
                         f"p{f['jump_percentile_predicted']} predicted")
    words = "; ".join(
        f"pause {f['pause_s']:.2f} s over {f['samples']:,} requests: corrected p99 "
        f"{f['p99_corrected_ms']:,.0f} ms, uncorrected {f['p99_uncorrected_ms']:,.1f} ms, "
        f"jump above {f['threshold_ms']:.0f} ms at p{f['jump_percentile_measured']} "
        f"(predicted p{f['jump_percentile_predicted']})" for f in figures)
    if wrong:
        return NOT_REPRODUCED, f"{words}. Not as published: {'; '.join(wrong)}"
    return REPRODUCED, words
