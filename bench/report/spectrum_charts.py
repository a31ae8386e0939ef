"""The latency percentile spectrum: latency against percentile on a nines axis, the
corrected and uncorrected curves of each case side by side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    NullLocator,
)

from bench.analysis.frames import is_native
from bench.report.plotting import (
    BACKGROUND,
    Chart,
    Palette,
    fmt_latency_tick,
    legend,
    log_wide,
    log_y,
    save,
)

# ---------------------------------------------------------------- latency percentile spectrum

SPECTRUM_TICKS = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999]
Curve = tuple[np.ndarray, np.ndarray]  # (percentile fraction, latency µs)


def spectrum_chart(
    curves: dict[str, Curve], case: str, note: str, palette: Palette, out: Path,
) -> Chart | None:
    """HdrHistogram-style percentile spectrum: x = 1/(1-p) on a log axis, y = latency."""
    if not curves:
        return None
    fig = Figure(figsize=(10.5, 5.5), layout="constrained")
    ax = fig.subplots()
    best = highlighted(curves)
    for variant, (levels, values_us) in curves.items():
        inverse = nines(levels)
        if variant in best or is_native(variant):
            style = dict(palette(variant), marker=None)
            ax.plot(inverse, values_us, drawstyle="steps-post", linewidth=2.0, zorder=3,
                    label=palette.label(variant), **style)
        else:
            ax.plot(inverse, values_us, drawstyle="steps-post", **BACKGROUND)
    if len(curves) > len(best) + sum(map(is_native, curves)):
        ax.plot([], [], label="every other model", **BACKGROUND)
    nines_axes(ax, list(curves.values()))
    legend(fig, [ax])
    ax.set_title(f"Latency by percentile at {case}")
    return Chart(save(fig, out / "latency_spectrum.png"), f"Latency percentile spectrum: {case}",
                 f"HdrHistogram percentile distribution of the valid repetitions merged ({note}). "
                 f"The {HIGHLIGHT} models with the lowest p99 in colour, native dashed, every "
                 "other model in grey. The x axis is 1/(1-p): each step right is ten times "
                 "rarer.")


def nines(levels: np.ndarray) -> np.ndarray:
    """The nines axis' x of each percentile fraction p: 1/(1-p)."""
    return 1.0 / (1.0 - levels)


def nines_axes(ax: Axes, curves: Sequence[Curve], more_us: Iterable[float] = ()) -> None:
    """x: the percentile on a "nines" axis (1/(1-p), log: 50, 90, 99, 99.9 % equally apart)
    up to the curves' rarest; y: latency over the curves' values and ``more_us`` (a reference
    line's), on a log axis when it spans more than ten times."""
    reach = max([1.0, *(float(nines(levels).max()) for levels, _ in curves)])
    latencies_us = [float(v) for _, values in curves for v in values] + list(more_us)
    ax.set_xscale("log")
    ticks = [t for t in SPECTRUM_TICKS if 1 / (1 - t) <= reach * 1.0001]
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - t) for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _percentile_label(1 - 1 / v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, reach * 1.2)
    if log_wide(latencies_us, 10):
        log_y(ax, fmt_latency_tick)
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(fmt_latency_tick))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency")
    ax.grid(True, which="major", alpha=0.3)


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
    drawn = list(corrected.values())
    for variant, (levels, values_us) in corrected.items():
        style = dict(palette(variant), marker=None)
        ax.plot(nines(levels), values_us, drawstyle="steps-post", linewidth=1.8,
                label=palette.label(variant), **style)
        if variant in uncorrected:
            levels_u, values_u = uncorrected[variant]
            ax.plot(nines(levels_u), values_u, drawstyle="steps-post",
                    **{**style, **UNCORRECTED})
            drawn.append(uncorrected[variant])
    if uncorrected:
        ax.plot([], [], color="#555", label="dotted: uncorrected", **UNCORRECTED)
    nines_axes(ax, drawn)
    legend(fig, [ax])
    ax.set_title(f"Latency by percentile at {case}")
    words = ("solid: latency from when each request was due (corrected for coordinated "
             "omission), dotted: from when it was sent" if uncorrected
             else "closed loop: latency from when each request was sent")
    return Chart(save(fig, path), f"Percentile spectrum: {case}",
                 f"Every model's merged histogram of its valid repetitions ({words}). "
                 "Each step right on the x axis is ten times rarer.")


HIGHLIGHT = 3  # models drawn in colour where every model on one axes would be unreadable


def highlighted(curves: dict[str, Curve]) -> list[str]:
    """The HIGHLIGHT competing models with the lowest p99 (native is drawn apart)."""
    p99 = sorted((float(np.interp(0.99, levels, values)), variant)
                 for variant, (levels, values) in curves.items() if not is_native(variant))
    return [variant for _, variant in p99[:HIGHLIGHT]]


def _percentile_label(level: float) -> str:
    text = f"{level * 100:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"
