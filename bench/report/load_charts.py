"""The charts of each case against its load: closed loop versus connections, workload mixes
side by side, the open-loop sweep, C10K (bench/report/plotting.py draws their common parts)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    NullLocator,
)

from bench.analysis.frames import C10K_GROUP, is_native
from bench.analysis.questions import case_words
from bench.analysis.sweeps import SweepResult
from bench.report.plotting import (
    BACKGROUND,
    SPREAD,
    Chart,
    Palette,
    connections_axis,
    fmt_bytes_tick,
    fmt_latency_tick,
    fmt_si,
    grid,
    log_wide,
    log_y,
    panel_title,
    save,
    small_multiples,
    spread,
)

# ---------------------------------------------------------------- closed loop versus connections


@dataclass
class MetricSpec:
    """What one versus-connections chart plots."""

    metric: str
    ylabel: str
    filename: str
    title: str
    caption: str
    scale: float = 1.0
    log_y: bool | None = None  # None: log when the values span > 20x
    y_formatter: Callable[[float, Any], str] | None = None
    log_base: int = 10


CONNECTION_CHARTS = [
    MetricSpec("throughput_rps", "throughput (responses/s)", "throughput_vs_connections.png",
               "Throughput versus connections",
               "Closed loop. Higher is better; native (dashed) is the reference ceiling.",
               y_formatter=fmt_si),
    MetricSpec("p99_us", "p99 latency", "p99_vs_connections.png",
               "p99 latency versus connections", "Closed loop. Lower is better; log scale.",
               log_y=True, y_formatter=fmt_latency_tick),
    MetricSpec("cpu_us_per_request", "server CPU per request", "cpu_per_request.png",
               "Server CPU time per request",
               "User + system CPU of the server's process tree over the measured window, "
               "divided by the responses. Lower is cheaper.", y_formatter=fmt_latency_tick),
    MetricSpec("rss_per_connection_bytes", "RSS per connection",
               "memory_per_connection.png", "Memory (RSS) per connection",
               "Growth of the server process tree's resident memory under load over its idle "
               "RSS, divided by the connections. Lower is leaner.", y_formatter=fmt_bytes_tick,
               log_base=4),
]


def connection_families(cases: pd.DataFrame) -> list[pd.DataFrame]:
    """Closed-loop case families (same mix, payload, pipeline) to draw against connections.

    Families measured at two or more connection counts; if none is, every family.
    """
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    families = [g for _, g in closed.groupby("family", sort=False)]
    scaling = [g for g in families if g["connections"].nunique() >= 2]
    return scaling or families


def connections_chart(
    spec: MetricSpec, agg: pd.DataFrame, cases: pd.DataFrame, palette: Palette, out: Path
) -> Chart | None:
    """The metric against connections: for a family measured at several counts, one small
    panel per model over the others in grey; for single counts, bars per case."""
    families = [
        f for f in connection_families(cases)
        if agg[agg["case"].isin(f["case"])][f"{spec.metric}_median"].notna().any()
    ]
    if not families:
        return None
    if families[0]["connections"].nunique() < 2:
        fig, axes = grid(len(families))
        for ax, family in zip(axes, families, strict=True):
            _draw_bars(ax, spec, agg, family, palette)
        fig.suptitle(spec.title)
        return Chart(save(fig, out / spec.filename), spec.title, f"{spec.caption} {SPREAD}.")
    family = families[0]  # the scenario's main scaling family (more would be more charts)
    fig = _family_multiples(spec, agg, family, palette)
    title = f"{spec.title}: {family['family_label'].iloc[0]}"
    return Chart(save(fig, out / spec.filename), title,
                 f"{spec.caption} One panel per model, in the scorecard's order: its median "
                 "(min–max bars) in its colour, every other model in grey behind it, native "
                 "dashed black; the same axes in every panel. Only valid figures are drawn "
                 "(a saturated client's trial still counts for CPU and memory).")


def _family_multiples(spec: MetricSpec, agg: pd.DataFrame, family: pd.DataFrame,
                      palette: Palette) -> Figure:
    columns = ["case", "variant", *[f"{spec.metric}_{s}" for s in ("median", "min", "max")]]
    rows = agg[columns].merge(family[["case", "connections"]], on="case")
    rows = rows[rows[f"{spec.metric}_median"].notna()].sort_values("connections")
    every = list(rows[f"{spec.metric}_median"] * spec.scale)
    log = spec.log_y or (spec.log_y is None and log_wide(every))
    if log:  # a log axis cannot show zero (no RSS growth at one connection): leave it out
        rows = rows[rows[f"{spec.metric}_median"] > 0]
    present = set(rows["variant"])
    variants = [v for v in palette.styles if v in present and not is_native(v)]
    natives = [v for v in palette.styles if v in present and is_native(v)]
    fig, axes = small_multiples(max(1, len(variants)))
    by_variant = {str(v): g for v, g in rows.groupby("variant", sort=False)}
    for ax, variant in zip(axes, variants or natives, strict=False):
        for other in [*variants, *natives]:
            series = by_variant[other]
            y = series[f"{spec.metric}_median"] * spec.scale
            if is_native(other):
                ax.plot(series["connections"], y, color="black", linestyle="--",
                        linewidth=1.0, zorder=2)
            elif other != variant:
                ax.plot(series["connections"], y, **BACKGROUND)
        series = by_variant[variant]
        median, err = spread(series, spec.metric, spec.scale)
        style = palette(variant)
        ax.errorbar(series["connections"], median, yerr=err, capsize=2, markersize=4,
                    linewidth=2.0, zorder=3, color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"])
        panel_title(ax, palette.label(variant), style["color"])
        connections_axis(ax, list(family["connections"]))
        ax.set_xlabel("")
        ax.tick_params(labelsize="small")
        ax.grid(True, which="major", alpha=0.3)
    if log:  # the panels share their y axis: setting it once sets it for all
        log_y(axes[0], spec.y_formatter, spec.log_base)
    elif spec.y_formatter:
        axes[0].set_ylim(bottom=0)
        axes[0].yaxis.set_major_formatter(FuncFormatter(spec.y_formatter))
    fig.supxlabel("connections", fontsize="medium")
    fig.supylabel(spec.ylabel + (" (log)" if log else ""), fontsize="medium")
    fig.suptitle(f"{spec.title}: {family['family_label'].iloc[0]}")
    return fig


def _draw_bars(
    ax: Axes, spec: MetricSpec, agg: pd.DataFrame, family: pd.DataFrame, palette: Palette
) -> None:
    """A family measured at one connection count: horizontal bars, largest on top."""
    case = family.iloc[0]
    rows = agg[(agg["case"] == case["case"]) & agg[f"{spec.metric}_median"].notna()]
    rows = rows.sort_values(f"{spec.metric}_median")
    median, err = spread(rows, spec.metric, spec.scale)
    natives = [is_native(v) for v in rows["variant"]]
    ax.barh(np.arange(len(rows)), median, xerr=err if err.any() else None, capsize=2, height=0.7,
            color=[palette(v)["color"] for v in rows["variant"]],
            hatch=["//" if n else None for n in natives],
            edgecolor=["grey" if n else "white" for n in natives], error_kw={"elinewidth": 0.8})
    ax.set_yticks(np.arange(len(rows)), [palette.label(v) for v in rows["variant"]])
    if log_wide(list(median), 50):
        ax.set_xscale("log")
        if spec.log_base != 10:
            ax.xaxis.set_major_locator(LogLocator(base=spec.log_base, numticks=12))
        ax.xaxis.set_minor_locator(NullLocator())
    if spec.y_formatter:
        ax.xaxis.set_major_formatter(FuncFormatter(spec.y_formatter))
    ax.set_xlabel(spec.ylabel)
    ax.set_title(f"{case['family_label']} at {int(case['connections']):,} connections",
                 fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)


# ---------------------------------------------------------------- workload mixes side by side


def mixes_chart(
    agg: pd.DataFrame, cases: pd.DataFrame, palette: Palette, out: Path,
    frame: pd.DataFrame | None = None,
) -> Chart | None:
    """One panel per closed-loop case: every model's throughput as a labelled bar, best on top.

    A model whose throughput is known only from trials with a saturated client gets a
    hatched bar of that figure (a lower bound, '≥'); one with no figure at all, a dash.
    """
    closed = cases[(cases["mode"] != "open") & (cases["group"] != C10K_GROUP)]
    closed = closed.sort_values("order")
    bounds = _saturated_medians(frame)
    shown = set(agg.loc[agg["throughput_rps_median"].notna(), "case"]) | \
        {case for case, _ in bounds}
    closed = closed[closed["case"].isin(shown)]
    if closed.empty:
        return None
    variants = [v for v in palette.styles if v in set(agg["variant"])]
    cols = min(3, len(closed))
    rows_n = math.ceil(len(closed) / cols)
    height = 0.2 * len(variants) + 1.0
    fig = Figure(figsize=(4.5 * cols + 0.4, height * rows_n + 0.6), layout="constrained")
    axes = fig.subplots(rows_n, cols, squeeze=False).ravel().tolist()
    for extra in axes[len(closed):]:
        extra.set_visible(False)
    for ax, case in zip(axes, closed.itertuples(), strict=False):
        _mix_panel(ax, case, agg[agg["case"] == case.case], variants, bounds, palette)
    fig.suptitle("Throughput per case (closed loop), best on top")
    return Chart(save(fig, out / "mixes.png"), "Workload mixes side by side",
                 f"Every closed-loop case, one panel each; bars are medians of valid figures "
                 f"({SPREAD}); hatched '≥': only trials whose client saturated, so the model "
                 "was at least this fast; '—': no valid figure (see the per-case tables).")


def _saturated_medians(frame: pd.DataFrame | None) -> dict[tuple[str, str], float]:
    """(case, variant) -> median throughput of its client-saturated trials (a lower bound)."""
    if frame is None or frame.empty:
        return {}
    rows = frame[frame["client_saturated"] & ~frame["has_errors"] & frame["queues_at"].isna()]
    medians = rows.groupby(["case", "variant"])["throughput_rps"].median()
    return {(str(c), str(v)): float(x) for (c, v), x in medians.items() if x == x}


def _mix_panel(ax: Axes, case: Any, rows: pd.DataFrame, variants: list[str],
               bounds: dict[tuple[str, str], float], palette: Palette) -> None:
    by_variant = rows.set_index("variant")
    bars = []  # (value, variant, is a bound)
    for variant in variants:
        value = by_variant["throughput_rps_median"].get(variant, math.nan) \
            if variant in by_variant.index else math.nan
        if value == value:
            bars.append((float(value), variant, False))
        elif (case.case, variant) in bounds:
            bars.append((bounds[(case.case, variant)], variant, True))
        elif variant in by_variant.index:
            bars.append((math.nan, variant, False))
    bars.sort(key=lambda b: (b[0] == b[0], b[0] if b[0] == b[0] else 0))  # '—' at the bottom
    y = np.arange(len(bars))
    values = np.array([b[0] for b in bars], float)
    ax.barh(y, np.nan_to_num(values), height=0.72,
            color=[palette(v)["color"] for _, v, _ in bars],
            hatch=["//" if bound else ("xx" if is_native(v) else None) for _, v, bound in bars],
            alpha=1.0, edgecolor="white")
    # the axis fits the competing models: a native bar far beyond them is cut at the edge
    # and labelled, so that the Python models' differences stay visible
    competing = [b[0] for b in bars if b[0] == b[0] and not is_native(b[1])]
    top = max(competing) if competing else (np.nanmax(values) if np.isfinite(values).any()
                                            else 1.0)
    for yi, (value, _variant, bound) in zip(y, bars, strict=True):
        text = "—" if value != value else ("≥ " if bound else "") + fmt_si(round(value, -1))
        if value == value and value > top * 1.25:
            ax.text(top * 1.24, yi, f"{text} →", va="center", ha="right", fontsize="x-small",
                    color="black", bbox={"facecolor": "white", "edgecolor": "none",
                                         "alpha": 0.9, "pad": 1.0})
            continue
        ax.text(value if value == value else 0, yi, " " + text, va="center",
                fontsize="x-small", color="#333")
    ax.set_yticks(y, [palette.label(v) for _, v, _ in bars], fontsize="x-small")
    ax.set_xlim(0, top * 1.25)
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_si))
    ax.tick_params(axis="x", labelsize="x-small")
    ax.set_title(f"{case_words(case)}", fontsize="small")
    ax.grid(True, axis="x", alpha=0.3)


# ---------------------------------------------------------------- open-loop sweep


def sweep_chart(
    sweep: SweepResult, palette: Palette, out: Path, index: int
) -> Chart | None:
    """p99 against offered rate, one small panel per model (every other model in grey), with
    the model's own p99 limit and a star at its highest rate within it."""
    points = sweep.points[sweep.points["rate"].notna() & sweep.points["p99_us_median"].notna()]
    if points.empty:
        return None
    present = set(points["variant"])
    variants = [v for v in palette.styles if v in present]
    fig, axes = small_multiples(len(variants), height=2.1)
    by_variant = {str(v): g.sort_values("rate") for v, g in points.groupby("variant")}
    for ax, variant in zip(axes, variants, strict=True):
        for other in variants:
            if other != variant:
                rows = by_variant[other]
                ax.plot(rows["rate"], rows["p99_us_median"], **BACKGROUND)
        rows = by_variant[variant]
        median, err = spread(rows, "p99_us")
        style = palette(variant)
        ax.errorbar(rows["rate"], median, yerr=err, capsize=2, markersize=4, linewidth=2.0,
                    zorder=3, color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"])
        limit = sweep.limit_us(variant)
        if limit == limit:
            ax.axhline(limit, color="red", linestyle=":", linewidth=1.2, zorder=2)
        _mark_within_slo(ax, sweep, variant, rows, style)
        panel_title(ax, palette.label(variant), style["color"])
        ax.xaxis.set_major_formatter(FuncFormatter(fmt_si))
        ax.tick_params(labelsize="small")
        ax.grid(True, alpha=0.3)
    log_y(axes[0], fmt_latency_tick)  # shared by every panel
    fig.supxlabel("offered rate (requests/s)", fontsize="medium")
    fig.supylabel("p99 latency (corrected, log)", fontsize="medium")
    fig.suptitle(f"Open-loop sweep: {sweep.label}")
    name = "latency_vs_load.png" if index == 0 else f"latency_vs_load_{index + 1}.png"
    return Chart(save(fig, out / name), f"Latency versus offered load: {sweep.label}",
                 "Open loop; one panel per model over the others in grey. Red dotted: the SLO, "
                 f"the same for every model ({sweep.describe_target()}); the star marks the "
                 "highest offered rate within it (interpolated between the last point that "
                 f"met it and the first that missed). {SPREAD}.")


def _mark_within_slo(
    ax: Axes, sweep: SweepResult, variant: str, rows: pd.DataFrame, style: dict[str, Any]
) -> None:
    """A star at the highest rate within the SLO (median over repetitions), on the SLO line
    where it was interpolated, else on the last point that met it."""
    rates = sweep.within_slo.get(variant) or []
    if not rates or np.median(rates) <= 0 or rows.empty:
        return
    target = float(np.median(rates))
    at = rows[np.isclose(rows["rate"].to_numpy(float), target)]
    p99 = float(at["p99_us_median"].iloc[0]) if not at.empty else sweep.slo_us
    ax.plot([target], [p99], marker="*", markersize=13,
            color=style["color"], markeredgecolor="black", linestyle="none", zorder=4)


# ---------------------------------------------------------------- C10K

C10K_PANELS = [  # metric, axis label, tick formatter (log axis if wide), log base
    ("p99_us", "p99 latency of the busy connections", fmt_latency_tick, 10),
    ("server_cpu_percent", "server CPU (% of a core)", None, 10),
    ("rss_per_held_connection_bytes", "RSS per connection held", fmt_bytes_tick, 4),
]


def c10k_chart(frame: pd.DataFrame, palette: Palette, out: Path) -> Chart | None:
    """Per C10K case, one bar per model: busy p99, server CPU and RSS per held connection.

    Unlike every other chart, trials with errors are drawn (hatched, label marked): turning
    connections away (select's ERROR 4) or timing them out is the result here.
    """
    rows = frame[(frame["group"] == C10K_GROUP) & ~frame["failed"]] if not frame.empty \
        else frame
    if rows.empty:
        return None
    cases = list(dict.fromkeys(rows["case"]))
    fig = Figure(figsize=(15.0, 0.32 * rows["variant"].nunique() * len(cases) + 1.6 * len(cases)),
                 layout="constrained")
    axes = fig.subplots(len(cases), len(C10K_PANELS), squeeze=False)
    for row_axes, case in zip(axes, cases, strict=True):
        here = rows[rows["case"] == case]
        medians = here.groupby("variant", sort=False).agg(
            **{metric: (metric, "median") for metric, *_ in C10K_PANELS},
            errors=("has_errors", "any"))
        medians = medians.sort_values("p99_us", ascending=False, na_position="first")
        labels = [palette.label(v) + (" ‡" if medians.loc[v, "errors"] else "")
                  for v in medians.index]
        for ax, (metric, xlabel, formatter, base) in zip(row_axes, C10K_PANELS, strict=True):
            values = medians[metric].to_numpy(float)
            ax.barh(np.arange(len(values)), np.nan_to_num(values), height=0.7,
                    color=[palette(v)["color"] for v in medians.index],
                    hatch=["xx" if e else None for e in medians["errors"]], edgecolor="white")
            ax.set_yticks(np.arange(len(values)), labels if ax is row_axes[0] else [])
            log = formatter is not None and log_wide(list(values), 5)
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=base, numticks=12))
                ax.xaxis.set_minor_locator(NullLocator())
            if formatter is not None:
                ax.xaxis.set_major_formatter(FuncFormatter(formatter))
            ax.set_xlabel(xlabel + (" (log)" if log else ""))
            ax.grid(True, axis="x", alpha=0.3)
        row_axes[1].set_title(case, fontsize="medium")
    fig.suptitle("C10K: every model on many connections")
    return Chart(save(fig, out / "c10k.png"), "C10K",
                 "Per case, the median of the trials that ran, errors included (hatched, ‡: "
                 "connections turned away or timed out; see the C10K tables). RSS per "
                 "connection is over the connections the server really held.")
