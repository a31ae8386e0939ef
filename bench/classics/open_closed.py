"""Open versus closed: the same mean load, two ways of offering it, two tails.

A closed system (a fixed number of clients, each waiting for its reply before sending again)
never lets requests pile up beyond its clients; an open one (arrivals that do not wait) does,
so at the same mean load its response times are higher and its tail longer. Here: one
connection in closed loop, then Poisson arrivals at that connection's own throughput over 16
connections (``fractions = [1.0]`` of the closed case: the same requests per second, so the
same load on the server). The ratio is the open p99 over the closed p99, paired within a round.
The published direction was stated before the run, so the test pooled over models and rounds
is one-sided (exact signed-rank, alpha 0.05).
"""

from __future__ import annotations

from typing import Any

from bench.analysis.frames import Run
from bench.classics.common import (
    ALPHA,
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
    ratio_test,
    summary,
)

NAME = "open-closed"
GROUP = "open-closed"
PUBLISHED = Published(
    title="Open versus closed: at the same mean load, the open system's tail is longer",
    source="Bianca Schroeder, Adam Wierman, Mor Harchol-Balter, \"Open Versus Closed: A "
           "Cautionary Tale\", NSDI 2006",
    expectation="At the same mean load, response times under open-loop arrivals are higher "
                "than in a closed loop with few clients; the closed loop hides the queueing "
                "that arrivals independent of replies create.",
)


def analyse(run: Run) -> Finding:
    rows = group_trials(run, GROUP)
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    models: dict[str, Any] = {}
    pooled: list[float] = []
    for model, own in rows.groupby("variant"):
        closed = own[own["mode"] == "closed"]
        opened = own[own["mode"] == "open"]
        ratios = paired(by_round(opened, "p99_us"), by_round(closed, "p99_us"))
        pooled += ratios
        models[str(model)] = {"p99_ratio_open_over_closed": summary(ratios, 2),
                              "p99_closed_us": summary(list(by_round(closed, "p99_us").values()),
                                                       0),
                              "p99_open_us": summary(list(by_round(opened, "p99_us").values()),
                                                     0),
                              "rate_rps": summary(list(by_round(opened, "rate").values()), 0)}
    p = ratio_test(pooled, "greater") if pooled else None
    measured = {"models": models, "pairs": len(pooled), "p_one_sided": p}
    chart = {"kind": "paired_bars", "y": "p99 (µs)",
             "bars": {m: {"closed": v["p99_closed_us"]["median"],
                          "open": v["p99_open_us"]["median"]} for m, v in models.items()}}
    return Finding(NAME, PUBLISHED, *_verdict(models, pooled, p), measured=measured,
                   chart=chart, left_out=left_out(rows))


def _verdict(models: dict[str, Any], pooled: list[float], p: float | None) -> tuple[str, str]:
    if not pooled or p is None:
        return NOT_MEASURABLE, "no round with a valid p99 both closed and open for any model"
    words = ", ".join(f"{m} {v['p99_ratio_open_over_closed']['median']:.2f}x" for m, v in
                      models.items() if v["p99_ratio_open_over_closed"]["n"])
    text = (f"open p99 over closed p99 at the same rate, median per model: {words}; "
            f"{len(pooled)} pairs, one-sided p = {p:.4f}")
    if p <= ALPHA:
        return REPRODUCED, text
    return NOT_REPRODUCED, f"{text}: the open loop's tail is not shown longer at alpha {ALPHA}"
