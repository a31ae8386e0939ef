"""What every chart of the report shares (matplotlib, Agg): the written ``Chart``, one
``Palette`` for all of them, tick formatters, and the figure helpers (panels, log axes, one
legend, saving). The chart families are ``load_charts.py``, ``spectrum_charts.py``,
``analysis_charts.py`` and the classics' ``classics_charts.py``.

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
    NullLocator,
)

from bench.analysis.frames import is_native  # noqa: E402

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


def spread(values: pd.DataFrame, metric: str, scale: float = 1.0) -> tuple[Any, Any]:
    """(medians, yerr) arrays for ``errorbar`` from an aggregate's median/min/max columns."""
    median = values[f"{metric}_median"].to_numpy(float) * scale
    low = values[f"{metric}_min"].to_numpy(float) * scale
    high = values[f"{metric}_max"].to_numpy(float) * scale
    err = np.vstack([np.clip(median - low, 0, None), np.clip(high - median, 0, None)])
    return median, np.nan_to_num(err)


def log_y(ax: Axes, formatter: Callable[[float, Any], str] | None, base: int = 10) -> None:
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


def connections_axis(ax: Axes, connections: list[int]) -> None:
    """Log x axis with a tick at every connection count that was measured."""
    ax.set_xscale("log")
    ticks = sorted({int(c) for c in connections if c == c})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v):,}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    ax.set_xlabel("connections")


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # constrained layout already fits labels and legends
    return path


def grid(count: int, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, two per row."""
    cols = 1 if count == 1 else 2
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols + 2.2, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend for the figure, outside the panels, without duplicates."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right upper", fontsize="small")


PANELS_PER_ROW = 5


def small_multiples(count: int, width: float = 2.55, height: float = 2.0
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


def panel_title(ax: Axes, text: str, colour: str) -> None:
    """A small panel's title as plain text above it (``set_title`` repositions every title at
    every draw, which costs seconds over twenty panels)."""
    ax.text(0.5, 1.03, text, transform=ax.transAxes, ha="center", va="bottom",
            color=colour, fontsize="medium", fontweight="bold")


def log_wide(values: list[float], ratio: float = 20.0) -> bool:
    """True when the positive values span more than ``ratio`` times: a log axis then."""
    finite = [v for v in values if v == v and v > 0]
    return bool(finite) and max(finite) / min(finite) > ratio
