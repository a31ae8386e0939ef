"""The classics' charts, one per experiment in the published form (bench/report/classics.py
places them): ``draw(experiment, palette, out)`` picks the drawing by the finding's chart
``kind`` and returns None when the kind is unknown or there is nothing to draw."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter

from bench.analysis import intervals
from bench.report import plotting, spectrum_charts
from bench.report.blocks import fmt_us

CHART_PREFIX = "classics-"
PUBLISHED_HATCH = "///"
LINE_STYLES = [{"color": "#d62728", "linestyle": "--"}, {"color": "black", "linestyle": ":"},
               {"color": "#555555", "linestyle": "-."}]

Drawing = Callable[[dict[str, Any], plotting.Palette, Path], plotting.Chart | None]


def chart_models(chart: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("series", "bars", "models"):
        found += list(chart.get(key) or {})
    for cells in (chart.get("measured") or {}).values():
        found += list(cells)
    return found


def draw(experiment: dict[str, Any], palette: plotting.Palette, out: Path
           ) -> plotting.Chart | None:
    """The experiment's chart, or None when its kind is unknown or it has nothing to draw."""
    chart = experiment.get("chart") or {}
    drawing = DRAWINGS.get(str(chart.get("kind")))
    if drawing is None:
        return None
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(experiment["name"]))
    return drawing(experiment, palette, out / f"{CHART_PREFIX}{name}.png")


def _number(value: Any) -> float | None:
    """A finite number, or None (JSON's null, NaN, a missing key)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if np.isfinite(value) else None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def idle_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
               ) -> plotting.Chart | None:
    """Server CPU per request (every trial, and the fitted line whose slope is in the legend)
    and the reply rate (median per level) against the idle connections held."""
    chart = experiment["chart"]
    fits = {m: (v or {}).get("fit") for m, v in
            ((experiment.get("measured") or {}).get("models") or {}).items()}
    series = {m: [(p[0], _number(p[1]), _number(p[2])) for p in points]
              for m, points in (chart.get("series") or {}).items()}
    series = {m: points for m, points in series.items() if any(p[1] is not None for p in points)}
    if not series:
        return None
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    cost, rate = fig.subplots(1, 2)
    for model, points in series.items():
        style = palette(model)
        idle = [p[0] for p in points if p[1] is not None]
        cost.scatter(idle, [p[1] for p in points if p[1] is not None], s=16, alpha=0.55,
                     color=style["color"], marker=style["marker"], zorder=3)
        line = fits.get(model)
        if line:
            ends = np.array([0.0, float(line["max_idle"])])
            cost.plot(ends, line["intercept_us"] + line["slope_us_per_1000"] * ends / 1000,
                      color=style["color"], linestyle=style["linestyle"], linewidth=2.0,
                      label=f"{model}: {line['slope_us_per_1000']:+.1f} µs per 1,000 idle "
                            f"[{line['slope_low']:+.1f}, {line['slope_high']:+.1f}]")
        else:
            cost.plot([], [], color=style["color"], marker=style["marker"], linestyle="none",
                      label=f"{model}: no slope (fewer than three idle levels)")
        levels = sorted({p[0] for p in points if p[2] is not None})
        medians = [intervals.median([p[2] for p in points if p[0] == level and p[2] is not None])
                   for level in levels]
        rate.plot(levels, medians, color=style["color"], marker=style["marker"],
                  linestyle=style["linestyle"], linewidth=1.6)
    for ax in (cost, rate):
        ax.set_xlabel(chart.get("x") or "idle connections held")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    cost.set_ylabel("server CPU per request")
    cost.yaxis.set_major_formatter(FuncFormatter(plotting.fmt_latency_tick))
    cost.set_title("Server CPU per request (points: trials; line: least-squares fit)",
                   fontsize="medium")
    rate.set_ylabel("reply rate (responses/s)")
    rate.yaxis.set_major_formatter(FuncFormatter(plotting.fmt_si))
    rate.set_title("Reply rate (median of rounds)", fontsize="medium")
    plotting.legend(fig, [cost])
    return plotting.Chart(plotting.save(fig, path), "Idle connections: cost per request",
                        "16 active connections in closed loop beside idle ones that were "
                        "answered once and then held silent. Left: the server's own CPU time "
                        "per request, each trial a point, each model's least-squares line; "
                        "the legend gives its slope in µs per 1,000 idle connections with "
                        "the 95 % interval. Right: the reply rate, the published form, which "
                        "on this shared 2-CPU machine moves with the neighbours as much as "
                        "with the idle connections.")


def _bar_labels(ax: Axes, x: list[float], values: list[float | None],
                words: Callable[[float], str], bottom: float) -> None:
    """Each bar's value above it; where a bar has no figure, 'no valid figure' standing up
    from the axis in its place."""
    for xi, value in zip(x, values, strict=True):
        if value is None:
            ax.text(xi, bottom, " no valid figure", ha="center", va="bottom", rotation=90,
                    fontsize="small", color="#777")
        else:
            ax.text(xi, value, words(value), ha="center", va="bottom", fontsize="small",
                    color="#333")


def _reference_lines(ax: Axes, lines: dict[str, Any], scale: float,
                     words: Callable[[float], str]) -> list[str]:
    """Horizontal reference lines with their value in the legend; the names left out (no
    figure) for the caption."""
    absent = []
    for (name, value), style in zip(lines.items(), LINE_STYLES * len(lines), strict=False):
        number = _number(value)
        if number is None:
            absent.append(name)
            continue
        ax.axhline(number * scale, linewidth=1.4, zorder=4, label=f"{name}: {words(number)}",
                   **style)
    return absent


def convoy_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
                 ) -> plotting.Chart | None:
    """The ECHOs' median latency per model as bars on a log axis, with the switch interval
    and the WORK's duration as horizontal lines."""
    chart = experiment["chart"]
    bars = {m: _number(v) for m, v in (chart.get("bars") or {}).items()}
    drawn = [v for v in bars.values() if v is not None and v > 0]
    if not drawn:
        return None
    lines = chart.get("lines") or {}
    every = drawn + [v for v in map(_number, lines.values()) if v is not None and v > 0]
    fig = Figure(figsize=(10.5, 4.8), layout="constrained")
    ax = fig.subplots()
    x = list(range(len(bars)))
    values_us = [None if v is None or v <= 0 else v * 1000 for v in bars.values()]
    ax.bar(x, [v or 0 for v in values_us], width=0.65,
           color=[palette(m)["color"] for m in bars], zorder=3)
    ax.set_ylim(min(every) * 1000 / 3, max(every) * 1000 * 3)
    _bar_labels(ax, x, values_us, fmt_us, min(every) * 1000 / 3)
    absent = _reference_lines(ax, lines, 1000, lambda v: f"{v:g} ms")
    plotting.log_y(ax, plotting.fmt_latency_tick)
    ax.set_xticks(x, [palette.label(m) for m in bars])
    ax.set_ylabel("ECHO median latency (log)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Small ECHOs beside one long WORK", fontsize="medium")
    plotting.legend(fig, [ax])
    missing = f" No {' or '.join(absent)} was measured, so no line for it." if absent else ""
    return plotting.Chart(plotting.save(fig, path), "The GIL's convoy",
                        "Median latency of the small ECHOs while one connection keeps a WORK "
                        "going, per model (model@2cpu: the server on both CPUs, the others on "
                        "one). Expected near the switch interval for threads, near the WORK's "
                        "duration for event loops, far below both for prefork." + missing)


def scaling_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
                  ) -> plotting.Chart | None:
    """Throughput on two CPUs over one per model: the median of the rounds as the bar, their
    range as the error bar, 1x and 2x as lines."""
    chart = experiment["chart"]
    bars = {m: v for m, v in (chart.get("bars") or {}).items()
            if isinstance(v, dict) and _number(v.get("median")) is not None}
    if not bars:
        return None
    fig = Figure(figsize=(9.5, 4.6), layout="constrained")
    ax = fig.subplots()
    x = list(range(len(bars)))
    medians = [float(v["median"]) for v in bars.values()]
    lows = [_or(_number(v.get("low")), m) for v, m in zip(bars.values(), medians, strict=True)]
    highs = [_or(_number(v.get("high")), m) for v, m in zip(bars.values(), medians, strict=True)]
    ax.bar(x, medians, width=0.6, color=[palette(m)["color"] for m in bars], zorder=3)
    ax.errorbar(x, medians, yerr=[np.subtract(medians, lows), np.subtract(highs, medians)],
                fmt="none", ecolor="black", capsize=5, linewidth=1.2, zorder=4)
    for xi, (value, high, cell) in enumerate(zip(medians, highs, bars.values(), strict=True)):
        ax.text(xi + 0.08, high, f"{value:.2f}× (n={cell.get('n', '?')})", ha="left",
                va="bottom", fontsize="small", color="#333")
    lines = chart.get("lines") or {}
    _reference_lines(ax, dict(sorted(lines.items(), key=lambda kv: -(_number(kv[1]) or 0))), 1,
                     lambda v: _published_for(experiment, v))
    top = max([*highs, *[v for v in map(_number, lines.values()) if v is not None]])
    ax.set_ylim(0, top * 1.18)
    ax.set_xticks(x, [palette.label(m) for m in bars])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    ax.set_ylabel(chart.get("y") or "throughput on 2 CPUs ÷ on 1")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("CPU-bound WORK: throughput on two CPUs over one", fontsize="medium")
    plotting.legend(fig, [ax])
    return plotting.Chart(plotting.save(fig, path), "Cores: scaling factor",
                        "Per model, its throughput with the server on two CPUs over its "
                        "throughput on one, paired within a round: the bar is the median of "
                        "the rounds, the error bar their range (n: rounds paired). Processes "
                        "are expected towards 2×, GIL threads and one event loop at 1×.")


def _range_bars(ax: Axes, x: np.ndarray, medians: list[float | None],
                ranges: list[dict[str, Any]]) -> list[float | None]:
    """Error bars from each median to its rounds' low and high, where all three are known;
    the highs, for the axis."""
    spans = [(at, median, _number(r.get("low")), _number(r.get("high")))
             for at, median, r in zip(x, medians, ranges, strict=True)]
    spans = [s for s in spans if None not in s[1:]]
    if spans:
        ax.errorbar([s[0] for s in spans], [s[1] for s in spans],
                    yerr=[[s[1] - s[2] for s in spans], [s[3] - s[1] for s in spans]],
                    fmt="none", ecolor="black", capsize=3, linewidth=1.0, zorder=4)
    return [s[3] for s in spans]


def _published_for(experiment: dict[str, Any], value: float) -> str:
    """Which published figures a reference line stands for: 'published for prefork' from
    numbers such as ``{"scaling_prefork": 2.0}``."""
    names = [str(key).removeprefix("scaling_").replace("_", " ").replace("gil ", "GIL ")
             for key, number in (experiment.get("numbers") or {}).items()
             if _number(number) == value]
    return "published for " + ", ".join(names) if names else "reference"


def _uvloop_claim(ax: Axes, experiment: dict[str, Any], models: list[str],
                  ours: list[float | None], x: np.ndarray) -> float | None:
    """uvloop's published claim, at least N times asyncio, drawn over uvloop's bar as a
    dashed mark at N times our asyncio ratio; its height, or None where it cannot be drawn."""
    factor = _number((experiment.get("numbers") or {}).get("uvloop_over_asyncio_at_least"))
    if not factor or "uvloop" not in models or "asyncio" not in models:
        return None
    base = ours[models.index("asyncio")]
    if base is None:
        return None
    at = x[models.index("uvloop")]
    ax.hlines(factor * base, at - 0.42, at + 0.42, colors="black", linestyles="--",
              linewidth=1.6, zorder=5)
    return factor * base


def echo_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
               ) -> plotting.Chart | None:
    """Per message size, each model's throughput over tornado's: ours (the median of the
    rounds, their range as the error bar) beside MagicStack's published ratio, hatched."""
    chart = experiment["chart"]
    measured, published = chart.get("measured") or {}, chart.get("published") or {}
    sizes = [s for s in chart.get("sizes") or list(measured)
             if any(_number(v) is not None for v in (measured.get(s) or {}).values())]
    if not sizes:
        return None
    table = (experiment.get("measured") or {}).get("table") or {}
    models = list(dict.fromkeys(m for s in sizes for m in measured[s]))
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    axes = fig.subplots(1, len(sizes), sharey=True, squeeze=False)[0].tolist()
    top, claimed = 0.0, False
    for ax, size in zip(axes, sizes, strict=True):
        x = np.arange(len(models), dtype=float)
        ours = [_number(measured[size].get(m)) for m in models]
        theirs = [_number((published.get(size) or {}).get(m)) for m in models]
        colours = [palette(m)["color"] for m in models]
        ax.bar(x - 0.2, [v or 0 for v in ours], width=0.4, color=colours, zorder=3)
        ranges = [((table.get(size) or {}).get(m) or {}).get("over_tornado") or {}
                  for m in models]
        highs = _range_bars(ax, x - 0.2, ours, ranges)
        shown = [i for i, v in enumerate(theirs) if v is not None]
        ax.bar([x[i] + 0.2 for i in shown], [theirs[i] for i in shown], width=0.4,
               facecolor="white", edgecolor=[colours[i] for i in shown],
               hatch=PUBLISHED_HATCH, linewidth=1.2, zorder=3)
        claim = _uvloop_claim(ax, experiment, models, ours, x)
        claimed = claimed or claim is not None
        top = max([top, *[v for v in [*ours, *theirs, *highs, claim] if v is not None]])
        ax.axhline(1.0, color="#555555", linewidth=1.0, linestyle="--", zorder=2)
        ax.set_xticks(x, [palette.label(m) for m in models], rotation=30, ha="right")
        ax.set_title(size, fontsize="medium")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylim(0, top * 1.15)
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    axes[0].set_ylabel(chart.get("y") or "throughput ÷ tornado's")
    keys = {"ours: median of rounds [range]": Patch(facecolor="#888888"),
            "MagicStack 2016 (published)": Patch(facecolor="white", edgecolor="#888888",
                                                 hatch=PUBLISHED_HATCH)}
    if claimed:
        keys["published: uvloop at least\n2× asyncio (ours)"] = Line2D(
            [], [], color="black", linestyle="--", linewidth=1.6)
    fig.legend(list(keys.values()), list(keys), loc="outside right upper", fontsize="small")
    fig.suptitle("Echo throughput relative to tornado, by message size")
    return plotting.Chart(plotting.save(fig, path), "MagicStack's echo table, ours beside theirs",
                        "Each model's throughput over tornado's at the same size, 10 "
                        "connections: solid our median over the rounds (each ratio paired "
                        "within a round, the error bar their range), hatched the ratio from "
                        "the figures published with uvloop's announcement (2016, CPython 3.5; "
                        "asyncio and uvloop were published only as uvloop over asyncio, at "
                        "least 2×: the black dash over uvloop is twice our asyncio). The grey "
                        "dashed line is tornado itself.")


def omission_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
                   ) -> plotting.Chart | None:
    """The corrected and uncorrected percentile spectra of one paused trial on the nines
    axis, the pause as a horizontal line and the predicted jump as a vertical one."""
    chart = experiment["chart"]
    curves: dict[str, spectrum_charts.Curve] = {}
    for name, points in (chart.get("lines") or {}).items():
        kept = [(q, ms) for q, ms in points if 0 <= q < 1 and ms is not None]
        if kept:
            curves[name] = (np.array([q for q, _ in kept]), np.array([ms for _, ms in kept]) * 1000)
    if not curves:
        return None
    fig = Figure(figsize=(10.5, 5.0), layout="constrained")
    ax = fig.subplots()
    styles = {"corrected": {"color": "#1f77b4", "linewidth": 2.0},
              "uncorrected": {"color": "#1f77b4", **spectrum_charts.UNCORRECTED, "linewidth": 2.0}}
    for name, (levels, values_us) in curves.items():
        ax.plot(spectrum_charts.nines(levels), values_us, drawstyle="steps-post", label=name,
                **styles.get(name, {"color": "#555555"}))
    pause = _number(chart.get("pause_ms"))
    if pause:
        ax.axhline(pause * 1000, color="#d62728", linestyle="--", linewidth=1.2,
                   label=f"the pause: {pause:,.0f} ms")
    jump = _number((experiment.get("measured") or {}).get("jump_percentile_predicted"))
    if jump is not None and 0 < jump < 100:
        ax.axvline(1 / (1 - jump / 100), color="black", linestyle=":", linewidth=1.2,
                   label=f"jump predicted at p{jump:g}")
    spectrum_charts.nines_axes(ax, list(curves.values()), [pause * 1000] if pause else [])
    if jump is not None and 0 < jump < 100:  # the nines ticks stop at 50 %: name the jump too
        ticks = sorted([*ax.get_xticks(), 1 / (1 - jump / 100)])
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_title("Latency by percentile, the server stopped inside the window",
                 fontsize="medium")
    plotting.legend(fig, [ax])
    return plotting.Chart(plotting.save(fig, path), "Coordinated omission: the spectrum",
                        "One paused trial's latency by percentile (x: 1/(1−p), each step right "
                        "ten times rarer). Solid: measured from when each request was due "
                        "(corrected); dotted: from when it was sent, as a closed-loop tool "
                        "would. The corrected line should climb to the pause (red) at about "
                        "the percentile the pause predicts (rate × pause ÷ samples, black).")


def overload_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
                   ) -> plotting.Chart | None:
    """Goodput (× capacity) against offered load per model, and each model's p99 over time at
    its highest offered load."""
    models = {m: v for m, v in (experiment["chart"].get("models") or {}).items()
              if any(_number(p[1]) is not None for p in v.get("goodput") or [])}
    if not models:
        return None
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    goodput, tail = fig.subplots(1, 2)
    _goodput_panel(goodput, models, palette)
    _tail_panel(tail, models, palette)
    plotting.legend(fig, [goodput])
    return plotting.Chart(plotting.save(fig, path), "Overload: goodput and the tail",
                        "Open loop at multiples of each model's own closed-loop capacity. "
                        "Left: the correct replies per second over the window as a share of "
                        "capacity (graceful: it stays level past 1×; collapse: it falls). "
                        "Right: p99 per half-second interval at the highest load, latency "
                        "measured from when each request was due, so a queue that grows "
                        "shows as a rising line.")


def _goodput_panel(ax: Axes, models: dict[str, Any], palette: plotting.Palette) -> None:
    shares = [(float(p[0]), _number(p[1])) for v in models.values() for p in v["goodput"]]
    for model, data in models.items():
        style = palette(model)
        points = [(p[0], _number(p[1])) for p in data["goodput"] if _number(p[1]) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=style["color"],
                marker=style["marker"], linestyle=style["linestyle"], linewidth=2.0,
                label=palette.label(model))
    offered = sorted({load for load, _ in shares})
    ax.plot([0, 1, offered[-1]], [0, 1, 1], color="#555555", linestyle="--", linewidth=1.0,
            label="ideal: every request up to capacity")
    ax.set_xlim(0, offered[-1] * 1.05)
    ax.set_ylim(0, max([1.2, *[share or 0 for _, share in shares]]) * 1.08)
    ax.xaxis.set_major_locator(FixedLocator(offered))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    ax.set_xlabel("offered load (× the model's capacity)")
    ax.set_ylabel("goodput (× capacity)")
    ax.set_title("Goodput against offered load", fontsize="medium")
    ax.grid(True, alpha=0.3)


def _tail_panel(ax: Axes, models: dict[str, Any], palette: plotting.Palette) -> None:
    """Each model's p99 per interval at its highest offered load, titled with that load."""
    highest: dict[str, float] = {}
    for model, data in models.items():
        timelines = {k: v for k, v in (data.get("timelines") or {}).items() if v}
        if not timelines:
            continue
        load = max(timelines, key=float)
        highest[model] = float(load)
        line = [(t, _number(p99)) for t, _rate, p99 in timelines[load]]
        line = [(t, p99 * 1000) for t, p99 in line if p99 is not None and p99 > 0]
        style = palette(model)
        ax.plot([t for t, _ in line], [v for _, v in line], color=style["color"],
                marker=style["marker"], linestyle=style["linestyle"], markersize=4)
    loads = set(highest.values())
    at = f"{loads.pop():g}× capacity" if len(loads) == 1 else \
        "each model's highest load (" + ", ".join(f"{m} {v:g}×" for m, v in highest.items()) + ")"
    if ax.lines:
        plotting.log_y(ax, plotting.fmt_latency_tick)
    ax.set_xlabel("time into the window (s)")
    ax.set_ylabel("p99 (corrected, log)")
    ax.set_title(textwrap.fill(f"p99 over time at {at}", 60), fontsize="medium")
    ax.grid(True, alpha=0.3)


def paired_chart(experiment: dict[str, Any], palette: plotting.Palette, path: Path
                 ) -> plotting.Chart | None:
    """Per model, the p99 in closed loop beside the p99 at the same rate in open loop."""
    bars = {m: (_number(v.get("closed")), _number(v.get("open")))
            for m, v in (experiment["chart"].get("bars") or {}).items() if isinstance(v, dict)}
    every = [x for pair in bars.values() for x in pair if x is not None and x > 0]
    if not every:
        return None
    fig = Figure(figsize=(9.5, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(bars), dtype=float)
    colours = [palette(m)["color"] for m in bars]
    closed = [c for c, _ in bars.values()]
    opened = [o for _, o in bars.values()]
    ax.bar(x - 0.2, [v or 0 for v in closed], width=0.4, color=colours, zorder=3)
    ax.bar(x + 0.2, [v or 0 for v in opened], width=0.4, facecolor="white", edgecolor=colours,
           hatch=PUBLISHED_HATCH, linewidth=1.2, zorder=3)
    low = min(every) / 3
    ax.set_ylim(low, max(every) * 3)
    _bar_labels(ax, list(x - 0.2), closed, fmt_us, low)
    _bar_labels(ax, list(x + 0.2), opened, fmt_us, low)
    plotting.log_y(ax, plotting.fmt_latency_tick)
    ax.set_xticks(x, [palette.label(m) for m in bars])
    ax.set_ylabel("p99 (log)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("The same mean load, closed then open", fontsize="medium")
    fig.legend([Patch(facecolor="#888888"),
                Patch(facecolor="white", edgecolor="#888888", hatch=PUBLISHED_HATCH)],
               ["closed loop", "open loop (Poisson, the same rate)"],
               loc="outside right upper", fontsize="small")
    return plotting.Chart(plotting.save(fig, path), "Open versus closed: p99",
                        "Per model, the median over rounds of the p99 with one closed-loop "
                        "connection (solid) and with Poisson arrivals at that connection's own "
                        "rate (hatched). Published: the open bar "
                        "higher.")


DRAWINGS: dict[str, Drawing] = {
    "cpu_per_request_vs_idle": idle_chart,
    "bars_with_lines": convoy_chart,
    "scaling_bars": scaling_chart,
    "ratio_table": echo_chart,
    "spectrum": omission_chart,
    "overload": overload_chart,
    "paired_bars": paired_chart,
}
