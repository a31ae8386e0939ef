"""Idle connections: what a server pays per request for connections that say nothing.

select and poll hand the kernel every watched descriptor on every call, so each wake-up costs
time in proportion to the connections held, busy or not; epoll keeps the interest list in the
kernel and returns only the ready ones. The measured figure is the server's own CPU time per
request (its process CPU clock over the window, ``bench/sampling.py``), fitted against the idle
connections held by least squares, per model; the slope is in µs per 1,000 idle connections
with its 95 % interval (Student's t on the fit's standard error).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from scipy import stats

from bench.analysis.frames import Run
from bench.classics.common import (
    NOT_MEASURABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    Published,
    group_trials,
    left_out,
    median,
    missing,
    rounded,
)

NAME = "idle"
GROUP = "idle"
PUBLISHED = Published(
    title="Idle connections: select and poll pay for every connection held, epoll does not",
    source="Davide Libenzi, dead-connection tests of epoll (lse.sourceforge.net/epoll); "
           "Gammo, Brecht, Shukla, Pariag, \"Comparing and Evaluating epoll, select, and poll "
           "Event Mechanisms\", Ottawa Linux Symposium 2004; Banga, Mogul, Druschel, \"A "
           "scalable and explicit event delivery mechanism for UNIX\", USENIX 1999",
    expectation="With no idle connections the three are alike; with 10,000 idle ones select "
                "and poll lose up to 79 % of their reply rate while epoll stays level.",
    numbers={"idle_connections": 10000, "reply_rate_loss_select_poll": 0.79,
             "reply_rate_loss_epoll": 0.0},
)
SCANNING = ("select", "poll")  # the models whose cost grows with the set they pass in
LEVEL = ("epoll",)  # the readiness interface the classics contrast them with
PUBLISHED_IDLE = 10000
MIN_LEVELS = 3  # idle levels a slope needs
LEVEL_SHARE = 0.2  # "level": epoll's slope at most a fifth of the scanning calls' smallest


def fit(rows: pd.DataFrame) -> dict[str, Any] | None:
    """CPU µs per request against idle connections held: intercept, slope per 1,000 and
    its 95 % interval; None with fewer than MIN_LEVELS levels or three points."""
    points = rows[["idle_connections", "cpu_us_per_request"]].dropna()
    if points["idle_connections"].nunique() < MIN_LEVELS or len(points) < 3:
        return None
    line = stats.linregress(points["idle_connections"], points["cpu_us_per_request"])
    spread = stats.t.ppf(0.975, len(points) - 2) * line.stderr * 1000
    slope = line.slope * 1000
    return {"intercept_us": round(line.intercept, 3), "slope_us_per_1000": round(slope, 3),
            "slope_low": round(slope - spread, 3), "slope_high": round(slope + spread, 3),
            "points": len(points), "levels": int(points["idle_connections"].nunique()),
            "max_idle": int(points["idle_connections"].max())}


def _reply_rate_loss(line: dict[str, Any], idle: int) -> float:
    """The reply rate lost at ``idle`` connections if CPU per request is all a request costs
    (a CPU-bound server's rate is 1 / CPU per request): 1 - a / (a + b·idle)."""
    base = line["intercept_us"]
    cost = base + line["slope_us_per_1000"] * idle / 1000
    return round(1 - base / cost, 3) if base > 0 and cost > 0 else float("nan")


def _measured_loss(rows: pd.DataFrame) -> float | None:
    """The throughput lost from no idle connections to the most, medians over rounds."""
    first = median(rows.loc[rows["idle_connections"] == 0, "throughput_rps"])
    last = median(rows.loc[rows["idle_connections"] == rows["idle_connections"].max(),
                           "throughput_rps"])
    return None if not first or last is None else round(1 - last / first, 3)


def analyse(run: Run) -> Finding:
    rows = group_trials(run, GROUP)
    if rows.empty:
        return missing(NAME, PUBLISHED, GROUP)
    models: dict[str, Any] = {}
    series: dict[str, list[list[float]]] = {}
    for model, own in rows.groupby("variant"):
        line = fit(own)
        points = own[["idle_connections", "cpu_us_per_request", "throughput_rps"]].dropna(
            subset=["cpu_us_per_request"])
        series[str(model)] = [[int(i), rounded(c, 2), rounded(t, 0)]
                              for i, c, t in points.itertuples(index=False)]
        models[str(model)] = {
            "fit": line,
            "throughput_loss_measured": _measured_loss(own),
            "reply_rate_loss_at_10000_from_fit": (_reply_rate_loss(line, PUBLISHED_IDLE)
                                                  if line else None)}
    verdict, reason = _verdict(models)
    return Finding(NAME, PUBLISHED, verdict, reason, measured={"models": models},
                   chart={"kind": "cpu_per_request_vs_idle",
                          "x": "idle connections held", "y": "server CPU µs per request",
                          "columns": ["idle", "cpu_us_per_request", "throughput_rps"],
                          "series": series},
                   left_out=left_out(rows))


def _verdict(models: dict[str, Any]) -> tuple[str, str]:
    """Reproduced when every scanning model's slope is above zero (95 % interval) and
    epoll's interval lies below a fifth of the smallest of their slopes."""
    scanning = {m: models[m]["fit"] for m in SCANNING if models.get(m, {}).get("fit")}
    level = {m: models[m]["fit"] for m in LEVEL if models.get(m, {}).get("fit")}
    if not scanning or not level:
        return NOT_MEASURABLE, ("a slope needs valid trials at three idle levels or more for "
                                "select or poll and for epoll; the run has "
                                + ", ".join(sorted(m for m in models if models[m]["fit"]))
                                or "none")
    words = "; ".join(f"{m} {f['slope_us_per_1000']:+.2f} µs [{f['slope_low']:+.2f}, "
                      f"{f['slope_high']:+.2f}]" for m, f in {**scanning, **level}.items())
    rising = all(f["slope_low"] > 0 for f in scanning.values())
    floor = LEVEL_SHARE * min(f["slope_us_per_1000"] for f in scanning.values())
    flat = all(f["slope_high"] < floor for f in level.values())
    if rising and flat:
        return REPRODUCED, (f"CPU per request per 1,000 idle connections (95 % interval): "
                            f"{words}: the scanning calls' cost grows with the connections "
                            "held, epoll's stays level")
    return NOT_REPRODUCED, (f"CPU per request per 1,000 idle connections (95 % interval): "
                            f"{words}: " + ("the scanning calls' slopes are not all above zero"
                                            if not rising else
                                            "epoll's slope is not clearly below a fifth of "
                                            "theirs"))
