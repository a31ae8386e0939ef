"""PNG charts of a run (matplotlib, Agg): one function per chart, each skipping absent data.

Every chart draws the median of the valid repetitions as the point and their min–max as the
error bar; trials flagged (client saturated, errors) or failed are never drawn. ``native`` is
the reference ceiling: a dashed black line, never a competitor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
)

from bench.analysis.frames import C10K_GROUP, is_native  # noqa: E402
from bench.analysis.sweeps import SweepResult  # noqa: E402

DPI = 110
SPREAD = "error bars: min–max of valid repetitions, point: median"


@dataclass
class Chart:
    """One written chart and the words that go with it in the report."""

    path: Path
    title: str
    caption: str


@dataclass
class Palette:
    """A fixed colour and line style per series label, the same in every chart."""

    styles: dict[str, dict[str, Any]]

    @classmethod
    def for_variants(cls, variants: list[str]) -> Palette:
        """A colour per model; with interpreters (labels ``model@tag``), one colour per model
        and a line style and marker per interpreter, so a model's lines read as a family."""
        colours = matplotlib.colormaps["tab10"].colors + matplotlib.colormaps["Dark2"].colors
        lines, markers = ("-", "--", ":", "-."), ("o", "^", "D", "v")
        models: dict[str, int] = {}
        tags: dict[str, int] = {}
        styles = {}
        for variant in variants:
            model, _, tag = variant.partition("@")
            way = tags.setdefault(tag, len(tags)) if tag else 0
            if is_native(variant):
                styles[variant] = {"color": "black", "linestyle": "--", "marker": "s"}
                continue
            index = models.setdefault(model, len(models))
            styles[variant] = {"color": colours[index % len(colours)],
                               "linestyle": lines[way % len(lines)],
                               "marker": markers[way % len(markers)]}
        return cls(styles)

    def label(self, variant: str) -> str:
        return f"{variant} (reference)" if is_native(variant) else variant

    def __call__(self, variant: str) -> dict[str, Any]:
        return self.styles.get(variant, {"color": "grey", "linestyle": "-", "marker": "o"})


# ---------------------------------------------------------------- formatting helpers


def fmt_si(value: float, _pos: Any = None) -> str:
    """1500 -> '1.5k'; for axis ticks."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def fmt_latency_tick(value_us: float, _pos: Any = None) -> str:
    """Axis tick for a latency in µs: '850µs', '1.5ms', '2s'."""
    if value_us >= 1e6:
        return f"{value_us / 1e6:g}s"
    if value_us >= 1e3:
        return f"{value_us / 1e3:g}ms"
    return f"{value_us:g}µs"


def fmt_bytes_tick(value: float, _pos: Any = None) -> str:
    """Axis tick for a size in bytes: '512B', '150KiB', '1.5MiB'."""
    for limit, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= limit:
            return f"{value / limit:.4g}{unit}"
    return f"{value:.4g}B"


def _spread(values: pd.DataFrame, metric: str, scale: float = 1.0) -> tuple[Any, Any]:
    """(medians, yerr) arrays for ``errorbar`` from an aggregate's median/min/max columns."""
    median = values[f"{metric}_median"].to_numpy(float) * scale
    low = values[f"{metric}_min"].to_numpy(float) * scale
    high = values[f"{metric}_max"].to_numpy(float) * scale
    err = np.vstack([np.clip(median - low, 0, None), np.clip(high - median, 0, None)])
    return median, np.nan_to_num(err)


def _log_y(ax: Axes, formatter: Callable[[float, Any], str] | None, base: int = 10) -> None:
    """Log y axis; ticks at 1-2-5 of each decade when the data spans less than two decades
    (or at powers of ``base``, e.g. 2 for sizes in bytes)."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    if base != 10:
        ax.yaxis.set_major_locator(LogLocator(base=base, numticks=12))
    elif low > 0 and high / low < 100:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    if formatter:
        ax.yaxis.set_major_formatter(FuncFormatter(formatter))


def _connections_axis(ax: Axes, connections: list[int]) -> None:
    """Log x axis with a tick at every connection count that was measured."""
    ax.set_xscale("log")
    ticks = sorted({int(c) for c in connections if c == c})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v):,}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    ax.set_xlabel("connections")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # constrained layout already fits labels and legends
    return path


def _grid(count: int, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, two per row."""
    cols = 1 if count == 1 else 2
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols + 2.2, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def _legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend for the figure, outside the panels, without duplicates."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right upper", fontsize="small")


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
    closed = cases[cases["mode"] != "open"]
    families = [g for _, g in closed.groupby("family", sort=False)]
    scaling = [g for g in families if g["connections"].nunique() >= 2]
    return scaling or families


def connections_chart(
    spec: MetricSpec, agg: pd.DataFrame, cases: pd.DataFrame, palette: Palette, out: Path
) -> Chart | None:
    """One panel per case family: the metric against connections, one line per model."""
    families = [
        f for f in connection_families(cases)
        if agg[agg["case"].isin(f["case"])][f"{spec.metric}_median"].notna().any()
    ]
    if not families:
        return None
    fig, axes = _grid(len(families))
    for ax, family in zip(axes, families, strict=True):
        if family["connections"].nunique() >= 2:
            _draw_family(ax, spec, agg, family, palette)
        else:
            _draw_bars(ax, spec, agg, family, palette)
    if any(f["connections"].nunique() >= 2 for f in families):
        _legend(fig, axes)
    fig.suptitle(spec.title)
    return Chart(_save(fig, out / spec.filename), spec.title, f"{spec.caption} {SPREAD}.")


def _draw_bars(
    ax: Axes, spec: MetricSpec, agg: pd.DataFrame, family: pd.DataFrame, palette: Palette
) -> None:
    """A family measured at one connection count: horizontal bars, largest on top."""
    case = family.iloc[0]
    rows = agg[(agg["case"] == case["case"]) & agg[f"{spec.metric}_median"].notna()]
    rows = rows.sort_values(f"{spec.metric}_median")
    median, err = _spread(rows, spec.metric, spec.scale)
    natives = [is_native(v) for v in rows["variant"]]
    ax.barh(np.arange(len(rows)), median, xerr=err if err.any() else None, capsize=2, height=0.7,
            color=[palette(v)["color"] for v in rows["variant"]],
            hatch=["//" if n else None for n in natives],
            edgecolor=["grey" if n else "white" for n in natives], error_kw={"elinewidth": 0.8})
    ax.set_yticks(np.arange(len(rows)), [palette.label(v) for v in rows["variant"]])
    if _log_wide(list(median), 50):
        ax.set_xscale("log")
        if spec.log_base != 10:
            ax.xaxis.set_major_locator(LogLocator(base=spec.log_base, numticks=12))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if spec.y_formatter:
        ax.xaxis.set_major_formatter(FuncFormatter(spec.y_formatter))
    ax.set_xlabel(spec.ylabel)
    ax.set_title(f"{case['family_label']} at {int(case['connections']):,} connections",
                 fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)


def _draw_family(
    ax: Axes, spec: MetricSpec, agg: pd.DataFrame, family: pd.DataFrame, palette: Palette
) -> None:
    rows = agg.merge(family[["case", "connections"]], on="case")
    rows = rows[rows[f"{spec.metric}_median"].notna()].sort_values("connections")
    every: list[float] = []
    for variant in palette.styles:
        series = rows[rows["variant"] == variant]
        if series.empty:
            continue
        median, err = _spread(series, spec.metric, spec.scale)
        every += list(median)
        ax.errorbar(series["connections"], median, yerr=err, capsize=3, markersize=4,
                    linewidth=1.6, label=palette.label(variant), **palette(variant))
    _connections_axis(ax, list(family["connections"]))
    if spec.log_y or (spec.log_y is None and _log_wide(every)):
        _log_y(ax, spec.y_formatter, spec.log_base)
    else:
        ax.set_ylim(bottom=0)
        if spec.y_formatter:
            ax.yaxis.set_major_formatter(FuncFormatter(spec.y_formatter))
    ax.set_ylabel(spec.ylabel)
    ax.set_title(str(family["family_label"].iloc[0]), fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)


def _log_wide(values: list[float], ratio: float = 20.0) -> bool:
    finite = [v for v in values if v == v and v > 0]
    return bool(finite) and max(finite) / min(finite) > ratio


# ---------------------------------------------------------------- workload mixes side by side


def mixes_chart(
    agg: pd.DataFrame, cases: pd.DataFrame, palette: Palette, out: Path
) -> Chart | None:
    """Grouped bars, one group per closed-loop case: throughput and p99 per model."""
    closed = cases[cases["mode"] != "open"].sort_values(["order"])
    closed = closed[closed["case"].isin(agg.loc[agg["throughput_rps_median"].notna(), "case"])]
    if closed.empty:
        return None
    measured = set(agg.loc[agg["throughput_rps_median"].notna(), "variant"])
    variants = [v for v in palette.styles if v in measured]
    width = 0.8 / max(len(variants), 1)
    fig = Figure(figsize=(max(8.0, 1.1 * len(closed) * max(len(variants), 3) * 0.45 + 3), 8.5),
                 layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(closed))
    for index, variant in enumerate(variants):
        rows = closed[["case"]].merge(agg[agg["variant"] == variant], on="case", how="left")
        offset = (index - (len(variants) - 1) / 2) * width
        style = palette(variant)
        bar = {"color": style["color"], "hatch": "//" if is_native(variant) else None,
               "edgecolor": "white" if not is_native(variant) else "grey"}
        for ax, metric in ((top, "throughput_rps"), (bottom, "p99_us")):
            median, err = _spread(rows, metric)
            ax.bar(x + offset, median, width, yerr=err, capsize=2, label=palette.label(variant),
                   error_kw={"elinewidth": 0.8}, **bar)
    _log_y(top, fmt_si)
    top.set_ylabel("throughput (responses/s, log)")
    _log_y(bottom, fmt_latency_tick)
    bottom.set_ylabel("p99 latency (log)")
    bottom.set_xticks(x, [str(c) for c in closed["case"]], rotation=30, ha="right")
    for ax in (top, bottom):
        ax.grid(True, axis="y", which="major", alpha=0.3)
    _legend(fig, [top])
    fig.suptitle("Workload mixes side by side (closed loop)")
    return Chart(_save(fig, out / "mixes.png"), "Workload mixes side by side",
                 f"Every closed-loop case; bars are medians, {SPREAD}. A missing bar: no valid "
                 "trial (see the per-case tables).")


# ---------------------------------------------------------------- latency percentile spectrum

SPECTRUM_TICKS = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999]


def spectrum_chart(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], case: str, note: str, palette: Palette,
    out: Path,
) -> Chart | None:
    """HdrHistogram-style percentile spectrum: x = 1/(1-p) on a log axis, y = latency."""
    if not curves:
        return None
    fig = Figure(figsize=(9.5, 5.5), layout="constrained")
    ax = fig.subplots()
    every: list[float] = []
    reach = 1.0
    for variant, (levels, values_us) in curves.items():
        inverse = 1.0 / (1.0 - levels)
        reach = max(reach, float(inverse.max()))
        every += list(values_us)
        style = dict(palette(variant), marker=None)
        ax.plot(inverse, values_us, drawstyle="steps-post", linewidth=1.6,
                label=palette.label(variant), **style)
    ax.set_xscale("log")
    ticks = [t for t in SPECTRUM_TICKS if 1 / (1 - t) <= reach * 1.0001]
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - t) for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _percentile_label(1 - 1 / v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(1, reach * 1.2)
    if _log_wide(every, 10):
        _log_y(ax, fmt_latency_tick)
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_latency_tick))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency")
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, [ax])
    ax.set_title(f"Latency by percentile at {case}")
    return Chart(_save(fig, out / "latency_spectrum.png"), f"Latency percentile spectrum: {case}",
                 f"HdrHistogram percentile distribution of the valid repetitions merged ({note}). "
                 "The x axis is 1/(1-p): each step right is ten times rarer.")


def _percentile_label(level: float) -> str:
    text = f"{level * 100:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"


# ---------------------------------------------------------------- open-loop sweep


def sweep_chart(
    sweep: SweepResult, palette: Palette, out: Path, index: int
) -> Chart | None:
    """p99 versus offered rate (with the SLO) and achieved versus offered rate, per model."""
    slo_us = sweep.slo_us
    points = sweep.points[sweep.points["rate"].notna()]
    if points.empty:
        return None
    fig = Figure(figsize=(14.5, 5.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for variant in palette.styles:
        rows = points[points["variant"] == variant].sort_values("rate")
        if rows.empty:
            continue
        style, label = palette(variant), palette.label(variant)
        p99 = rows[rows["p99_us_median"].notna()]
        median, err = _spread(p99, "p99_us")
        left.errorbar(p99["rate"], median, yerr=err, capsize=3, markersize=4, label=label,
                      **style)
        _mark_within_slo(left, sweep, variant, p99, style)
        done = rows[rows["throughput_rps_median"].notna()]
        tp, tp_err = _spread(done, "throughput_rps")
        right.errorbar(done["rate"], tp, yerr=tp_err, capsize=3, markersize=4, label=label,
                       **style)
    left.axhline(slo_us, color="red", linestyle=":", linewidth=1.4,
                 label=f"SLO p99 {fmt_latency_tick(slo_us)}")
    _log_y(left, fmt_latency_tick)
    left.set(xlabel="offered rate (requests/s)", ylabel="p99 latency (corrected, log)",
             title="p99 versus offered load")
    top = float(points["rate"].max()) * 1.05
    right.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":",
               label="achieved = offered")
    right.set(xlabel="offered rate (requests/s)", ylabel="achieved throughput (responses/s)",
              title="achieved versus offered")
    for ax in (left, right):
        ax.xaxis.set_major_formatter(FuncFormatter(fmt_si))
        ax.grid(True, alpha=0.3)
    right.yaxis.set_major_formatter(FuncFormatter(fmt_si))
    _legend(fig, [left, right])
    fig.suptitle(f"Open-loop sweep: {sweep.label}")
    name = "latency_vs_load.png" if index == 0 else f"latency_vs_load_{index + 1}.png"
    return Chart(_save(fig, out / name), f"Latency versus offered load: {sweep.label}",
                 f"Open loop, each model offered 10–110 % of its own closed-loop maximum. The "
                 f"star marks the highest offered rate up to which p99 stayed under the SLO "
                 f"({fmt_latency_tick(slo_us)}) at every point. {SPREAD}.")


def _mark_within_slo(
    ax: Axes, sweep: SweepResult, variant: str, rows: pd.DataFrame, style: dict[str, Any]
) -> None:
    """A star on the point of the highest rate within the SLO (median over repetitions)."""
    rates = sweep.within_slo.get(variant) or []
    if not rates or np.median(rates) <= 0 or rows.empty:
        return
    target = float(np.median(rates))
    nearest = rows.iloc[int(np.argmin(np.abs(rows["rate"].to_numpy(float) - target)))]
    ax.plot([nearest["rate"]], [nearest["p99_us_median"]], marker="*", markersize=14,
            color=style["color"], markeredgecolor="black", linestyle="none")


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
            log = formatter is not None and _log_wide(list(values), 5)
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=base, numticks=12))
                ax.xaxis.set_minor_formatter(NullFormatter())
            if formatter is not None:
                ax.xaxis.set_major_formatter(FuncFormatter(formatter))
            ax.set_xlabel(xlabel + (" (log)" if log else ""))
            ax.grid(True, axis="x", alpha=0.3)
        row_axes[1].set_title(case, fontsize="medium")
    fig.suptitle("C10K: every model on many connections")
    return Chart(_save(fig, out / "c10k.png"), "C10K",
                 "Per case, the median of the trials that ran, errors included (hatched, ‡: "
                 "connections turned away or timed out; see the C10K tables). RSS per "
                 "connection is over the connections the server really held.")
