"""PNG charts of a run (matplotlib, Agg): one function per chart, each skipping absent data.

Every chart draws the median of the valid repetitions as the point and their min–max as the
error bar; trials flagged (client saturated, errors) or failed are never drawn. ``native`` is
the reference ceiling: a dashed black line, never a competitor.
"""

from __future__ import annotations

import math
import textwrap
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
    NullLocator,
)

from bench.analysis.frames import C10K_GROUP, is_native  # noqa: E402
from bench.analysis.questions import case_words  # noqa: E402
from bench.analysis.sweeps import SweepResult  # noqa: E402
from bench.analysis.usl import UslFit  # noqa: E402
from bench.analysis.usl import usl as usl_curve  # noqa: E402
from bench.analysis.workload import Workload  # noqa: E402

DPI = 110
SPREAD = "error bars: min–max of valid repetitions, point: median"


@dataclass
class Chart:
    """One written chart and the words that go with it in the report."""

    path: Path
    title: str
    caption: str


# distinct colours for up to 23 models before a colour repeats (with another marker): tab10
# without its grey (grey draws the other models behind a highlighted one), Dark2, then darker
# shades; the order is the scorecard's, so the best models get the clearest colours
COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354",
]
MARKERS = ("o", "^", "D", "v", "s", "P", "X")
BACKGROUND = {"color": "#c4c4c4", "linewidth": 0.8, "alpha": 0.7, "zorder": 1}


@dataclass
class Palette:
    """A fixed colour, line style and marker per series label, the same in every chart."""

    styles: dict[str, dict[str, Any]]

    @classmethod
    def for_variants(cls, variants: list[str]) -> Palette:
        """A colour per model; with interpreters (labels ``model@tag``), one colour per model
        and a line style and marker per interpreter, so a model's lines read as a family."""
        lines = ("-", "--", ":", "-.")
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
            styles[variant] = {"color": COLOURS[index % len(COLOURS)],
                               "linestyle": lines[way % len(lines)],
                               "marker": MARKERS[(way + index // len(COLOURS)) % len(MARKERS)]}
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
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks on log axes cost seconds per chart
    if formatter:
        ax.yaxis.set_major_formatter(FuncFormatter(formatter))


def _connections_axis(ax: Axes, connections: list[int]) -> None:
    """Log x axis with a tick at every connection count that was measured."""
    ax.set_xscale("log")
    ticks = sorted({int(c) for c in connections if c == c})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v):,}"))
    ax.xaxis.set_minor_locator(NullLocator())
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
        fig, axes = _grid(len(families))
        for ax, family in zip(axes, families, strict=True):
            _draw_bars(ax, spec, agg, family, palette)
        fig.suptitle(spec.title)
        return Chart(_save(fig, out / spec.filename), spec.title, f"{spec.caption} {SPREAD}.")
    family = families[0]  # the scenario's main scaling family (more would be more charts)
    fig = _family_multiples(spec, agg, family, palette)
    title = f"{spec.title}: {family['family_label'].iloc[0]}"
    return Chart(_save(fig, out / spec.filename), title,
                 f"{spec.caption} One panel per model, in the scorecard's order: its median "
                 "(min–max bars) in its colour, every other model in grey behind it, native "
                 "dashed black; the same axes in every panel. Only valid figures are drawn "
                 "(a saturated client's trial still counts for CPU and memory).")


PANELS_PER_ROW = 5


def _small_multiples(count: int, width: float = 2.55, height: float = 2.0
                     ) -> tuple[Figure, list[Axes]]:
    """A grid of ``count`` small panels sharing both axes, PANELS_PER_ROW to a row. Margins
    are fixed (in inches): constrained layout over twenty panels costs seconds per chart."""
    cols = max(1, min(PANELS_PER_ROW, count))
    rows = math.ceil(count / cols)
    left, right, top, bottom, gap_w, gap_h = 1.25, 0.2, 0.65, 0.55, 0.25, 0.42
    size = (width * cols + left + right, height * rows + top + bottom)
    fig = Figure(figsize=size)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True,
                        gridspec_kw={"left": left / size[0], "right": 1 - right / size[0],
                                     "top": 1 - top / size[1], "bottom": bottom / size[1],
                                     "wspace": gap_w / width, "hspace": gap_h / height})
    axes = axes.ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def _panel_title(ax: Axes, text: str, colour: str) -> None:
    """A small panel's title as plain text above it (``set_title`` repositions every title at
    every draw, which costs seconds over twenty panels)."""
    ax.text(0.5, 1.03, text, transform=ax.transAxes, ha="center", va="bottom",
            color=colour, fontsize="medium", fontweight="bold")


def _family_multiples(spec: MetricSpec, agg: pd.DataFrame, family: pd.DataFrame,
                      palette: Palette) -> Figure:
    columns = ["case", "variant", *[f"{spec.metric}_{s}" for s in ("median", "min", "max")]]
    rows = agg[columns].merge(family[["case", "connections"]], on="case")
    rows = rows[rows[f"{spec.metric}_median"].notna()].sort_values("connections")
    every = list(rows[f"{spec.metric}_median"] * spec.scale)
    log = spec.log_y or (spec.log_y is None and _log_wide(every))
    if log:  # a log axis cannot show zero (no RSS growth at one connection): leave it out
        rows = rows[rows[f"{spec.metric}_median"] > 0]
    present = set(rows["variant"])
    variants = [v for v in palette.styles if v in present and not is_native(v)]
    natives = [v for v in palette.styles if v in present and is_native(v)]
    fig, axes = _small_multiples(max(1, len(variants)))
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
        median, err = _spread(series, spec.metric, spec.scale)
        style = palette(variant)
        ax.errorbar(series["connections"], median, yerr=err, capsize=2, markersize=4,
                    linewidth=2.0, zorder=3, color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"])
        _panel_title(ax, palette.label(variant), style["color"])
        _connections_axis(ax, list(family["connections"]))
        ax.set_xlabel("")
        ax.tick_params(labelsize="small")
        ax.grid(True, which="major", alpha=0.3)
    if log:  # the panels share their y axis: setting it once sets it for all
        _log_y(axes[0], spec.y_formatter, spec.log_base)
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
        ax.xaxis.set_minor_locator(NullLocator())
    if spec.y_formatter:
        ax.xaxis.set_major_formatter(FuncFormatter(spec.y_formatter))
    ax.set_xlabel(spec.ylabel)
    ax.set_title(f"{case['family_label']} at {int(case['connections']):,} connections",
                 fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)


def _log_wide(values: list[float], ratio: float = 20.0) -> bool:
    finite = [v for v in values if v == v and v > 0]
    return bool(finite) and max(finite) / min(finite) > ratio


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
    return Chart(_save(fig, out / "mixes.png"), "Workload mixes side by side",
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


# ---------------------------------------------------------------- latency percentile spectrum

SPECTRUM_TICKS = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999]


def spectrum_chart(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], case: str, note: str, palette: Palette,
    out: Path,
) -> Chart | None:
    """HdrHistogram-style percentile spectrum: x = 1/(1-p) on a log axis, y = latency."""
    if not curves:
        return None
    fig = Figure(figsize=(10.5, 5.5), layout="constrained")
    ax = fig.subplots()
    every: list[float] = []
    reach = 1.0
    best = highlighted(curves)
    for variant, (levels, values_us) in curves.items():
        inverse = 1.0 / (1.0 - levels)
        reach = max(reach, float(inverse.max()))
        every += list(values_us)
        if variant in best or is_native(variant):
            style = dict(palette(variant), marker=None)
            ax.plot(inverse, values_us, drawstyle="steps-post", linewidth=2.0, zorder=3,
                    label=palette.label(variant), **style)
        else:
            ax.plot(inverse, values_us, drawstyle="steps-post", **BACKGROUND)
    if len(curves) > len(best) + sum(map(is_native, curves)):
        ax.plot([], [], label="every other model", **BACKGROUND)
    _nines_axes(ax, reach, every)
    _legend(fig, [ax])
    ax.set_title(f"Latency by percentile at {case}")
    return Chart(_save(fig, out / "latency_spectrum.png"), f"Latency percentile spectrum: {case}",
                 f"HdrHistogram percentile distribution of the valid repetitions merged ({note}). "
                 f"The {HIGHLIGHT} models with the lowest p99 in colour, native dashed, every "
                 "other model in grey. The x axis is 1/(1-p): each step right is ten times "
                 "rarer.")


def _nines_axes(ax: Axes, reach: float, latencies_us: list[float]) -> None:
    """x: the percentile on a "nines" axis (1/(1-p), log: 50, 90, 99, 99.9 % equally apart)
    up to ``reach``; y: latency, on a log axis when it spans more than ten times."""
    ax.set_xscale("log")
    ticks = [t for t in SPECTRUM_TICKS if 1 / (1 - t) <= reach * 1.0001]
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - t) for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _percentile_label(1 - 1 / v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, reach * 1.2)
    if _log_wide(latencies_us, 10):
        _log_y(ax, fmt_latency_tick)
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_latency_tick))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency")
    ax.grid(True, which="major", alpha=0.3)


Curve = tuple[np.ndarray, np.ndarray]  # (percentile fraction, latency µs)
UNCORRECTED = {"linestyle": ":", "linewidth": 1.2, "alpha": 0.8}


def case_spectra_chart(case: str, corrected: dict[str, Curve], uncorrected: dict[str, Curve],
                       palette: Palette, path: Path) -> Chart | None:
    """One case's percentile spectrum, every model in its own colour: the latency each
    request saw (open loop: measured from when it was due, so queueing counts) solid, and
    where the run is open loop the uncorrected latency (from when it was sent) dotted."""
    if not corrected:
        return None
    fig = Figure(figsize=(10.5, 5.0), layout="constrained")
    ax = fig.subplots()
    every: list[float] = []
    reach = 1.0
    for variant, (levels, values_us) in corrected.items():
        style = dict(palette(variant), marker=None)
        inverse = 1.0 / (1.0 - levels)
        reach, every = max(reach, float(inverse.max())), every + list(values_us)
        ax.plot(inverse, values_us, drawstyle="steps-post", linewidth=1.8,
                label=palette.label(variant), **style)
        if variant in uncorrected:
            levels_u, values_u = uncorrected[variant]
            ax.plot(1.0 / (1.0 - levels_u), values_u, drawstyle="steps-post",
                    **{**style, **UNCORRECTED})
            every += list(values_u)
    if uncorrected:
        ax.plot([], [], color="#555", label="dotted: uncorrected", **UNCORRECTED)
    _nines_axes(ax, reach, every)
    _legend(fig, [ax])
    ax.set_title(f"Latency by percentile at {case}")
    words = ("solid: latency from when each request was due (corrected for coordinated "
             "omission), dotted: from when it was sent" if uncorrected
             else "closed loop: latency from when each request was sent")
    return Chart(_save(fig, path), f"Percentile spectrum: {case}",
                 f"Every model's merged histogram of its valid repetitions ({words}). "
                 "Each step right on the x axis is ten times rarer.")


HIGHLIGHT = 3  # models drawn in colour where every model on one axes would be unreadable


def highlighted(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The HIGHLIGHT competing models with the lowest p99 (native is drawn apart)."""
    p99 = sorted((float(np.interp(0.99, levels, values)), variant)
                 for variant, (levels, values) in curves.items() if not is_native(variant))
    return [variant for _, variant in p99[:HIGHLIGHT]]


def _percentile_label(level: float) -> str:
    text = f"{level * 100:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"


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
    fig, axes = _small_multiples(len(variants), height=2.1)
    by_variant = {str(v): g.sort_values("rate") for v, g in points.groupby("variant")}
    for ax, variant in zip(axes, variants, strict=True):
        for other in variants:
            if other != variant:
                rows = by_variant[other]
                ax.plot(rows["rate"], rows["p99_us_median"], **BACKGROUND)
        rows = by_variant[variant]
        median, err = _spread(rows, "p99_us")
        style = palette(variant)
        ax.errorbar(rows["rate"], median, yerr=err, capsize=2, markersize=4, linewidth=2.0,
                    zorder=3, color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"])
        limit = sweep.limit_us(variant)
        if limit == limit:
            ax.axhline(limit, color="red", linestyle=":", linewidth=1.2, zorder=2)
        _mark_within_slo(ax, sweep, variant, rows, style)
        _panel_title(ax, palette.label(variant), style["color"])
        ax.xaxis.set_major_formatter(FuncFormatter(fmt_si))
        ax.tick_params(labelsize="small")
        ax.grid(True, alpha=0.3)
    _log_y(axes[0], fmt_latency_tick)  # shared by every panel
    fig.supxlabel("offered rate (requests/s)", fontsize="medium")
    fig.supylabel("p99 latency (corrected, log)", fontsize="medium")
    fig.suptitle(f"Open-loop sweep: {sweep.label}")
    name = "latency_vs_load.png" if index == 0 else f"latency_vs_load_{index + 1}.png"
    return Chart(_save(fig, out / name), f"Latency versus offered load: {sweep.label}",
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
            log = formatter is not None and _log_wide(list(values), 5)
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
    return Chart(_save(fig, out / "c10k.png"), "C10K",
                 "Per case, the median of the trials that ran, errors included (hatched, ‡: "
                 "connections turned away or timed out; see the C10K tables). RSS per "
                 "connection is over the connections the server really held.")


# ---------------------------------------------------------------- the scorecard as a heat map

HEATMAP = "scorecard.png"


def scorecard_heatmap(items: list[Workload], order: list[str], out: Path) -> Chart | None:
    """Models × workloads coloured by how many times worse than the column's leader (log),
    each cell labelled with its ratio; green: the leader and its ties."""
    if not items or not order:
        return None
    from matplotlib.colors import LinearSegmentedColormap, to_rgba

    ramp = LinearSegmentedColormap.from_list(
        "worse", ["#fff3b0", "#fdcc8a", "#f49778", "#de6666"])
    colours = {"best": "#9fd89f", "tie": "#c8ebc8", "untested": "#e4f2c4",
               "bound": "#cfe3f7", "missing": "#ececec", "reference": "#f4f4f4"}
    fig = Figure(figsize=(1.25 * len(items) + 2.4, 0.34 * len(order) + 1.9),
                 layout="constrained")
    ax = fig.subplots()
    image = np.ones((len(order), len(items), 4))
    for c, workload in enumerate(items):
        for r, model in enumerate(order):
            cell = workload.cells.get(model)
            if cell is None:
                image[r, c] = to_rgba("white")
                continue
            if cell.status == "worse":
                image[r, c] = ramp(min(1.0, math.log(max(cell.badness, 1.0)) / math.log(16)))
            else:
                image[r, c] = to_rgba(colours.get(cell.status, "#ffffff"))
            ax.text(c, r, _heat_text(cell), ha="center", va="center", fontsize="x-small")
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(items)), [w.short for w in items], rotation=30, ha="right",
                  fontsize="small")
    ax.set_yticks(range(len(order)), [f"{m} (ref.)" if is_native(m) else m for m in order],
                  fontsize="small")
    ax.set_xticks(np.arange(-0.5, len(items)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(order)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Scorecard: each model relative to the best per workload")
    return Chart(_save(fig, out / HEATMAP), "Scorecard heat map",
                 "The scorecard above as a picture: green the leader and the models inside "
                 "its interval, yellow to red up to 16 times worse (log), blue a lower bound "
                 "(client saturated), grey no valid figure.")


def _heat_text(cell: Any) -> str:
    if cell.status == "best":
        return "best"
    if cell.status == "missing":
        return "—"
    ratio = cell.relative
    if ratio != ratio:
        return "—"
    text = f"{ratio:.2g}×"
    return ("≥" + text) if cell.status == "bound" else text


USL_CHART = "usl_fit.png"


def usl_chart(fits: list[UslFit], palette: Palette, out: Path) -> Chart | None:
    """Throughput against connections per model with its USL fit: one small panel per model
    (the scorecard's order), the valid trials as points, the fitted curve where the fit is
    reported (dotted, with the reason, where it is not), N* marked where it is in range."""
    reported = [f for f in fits if f.valid]
    if not reported:  # no family measured at enough levels: nothing worth a chart
        return None
    fits = [f for f in fits if f.family == reported[0].family and f.data]
    order = {v: i for i, v in enumerate(palette.styles)}
    fits = sorted(fits, key=lambda f: order.get(f.variant, len(order)))
    fig, axes = _small_multiples(len(fits))
    top = max(y for f in fits for _, y in f.data)
    for ax, result in zip(axes, fits, strict=True):
        _usl_panel(ax, result, palette)
    # the panels share one x axis: its ticks are every level any model was measured at (the
    # last panel's own levels would otherwise win: a reference measured at 3 levels hid 8-128)
    _connections_axis(axes[0], [n for f in fits for n, _ in f.data])
    axes[0].set_xlabel("")  # the figure's own label says it once
    axes[0].set_ylim(0, top * 1.15)
    axes[0].yaxis.set_major_formatter(FuncFormatter(fmt_si))
    fig.supxlabel("connections (log)", fontsize="medium")
    fig.supylabel("throughput (requests/s)", fontsize="medium")
    title = f"USL fit: {fits[0].family}"
    fig.suptitle(title)
    return Chart(_save(fig, out / USL_CHART), title,
                 "Throughput of every valid trial (points) and Gunther's Universal Scalability "
                 "Law fitted to them, X(N) = λN / (1 + σ(N−1) + κN(N−1)) (line), one panel per "
                 "model; the vertical line is the peak concurrency N* where it falls in the "
                 "range drawn. A model whose fit is not reported (too few valid levels) shows its "
                 "points and why.")


def _usl_panel(ax: Axes, result: UslFit, palette: Palette) -> None:
    style = palette(result.variant)
    n = [p[0] for p in result.data]
    x = [p[1] for p in result.data]
    ax.scatter(n, x, s=14, color=style["color"], marker=style["marker"], zorder=3)
    levels = sorted(set(n))
    if result.valid:
        grid = np.geomspace(1, max(levels) * 1.5, 200)
        ax.plot(grid, usl_curve(grid, result.lam, result.sigma, result.kappa),
                color=style["color"], linewidth=1.5, zorder=2)
        if math.isfinite(result.n_star) and result.n_star <= max(levels) * 1.5:
            ax.axvline(result.n_star, color=style["color"], linestyle=":", linewidth=1.0)
        note = f"σ={result.sigma:.3g} κ={result.kappa:.2g}\nR²={result.r2:.3f}"
        corner = (0.03, 0.97, "left", "top")  # a rising curve leaves the top left empty
    else:
        note = "not fitted:\n" + textwrap.fill(result.reason, 24)
        corner = (0.97, 0.03, "right", "bottom")  # few, rising points: the bottom right
    ax.text(corner[0], corner[1], note, transform=ax.transAxes, ha=corner[2], va=corner[3],
            fontsize="x-small", zorder=4,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
    _connections_axis(ax, levels)
    ax.set_xlabel("")
    ax.tick_params(labelsize="small")
    ax.grid(True, which="major", alpha=0.3)
    _panel_title(ax, palette.label(result.variant), style["color"])
