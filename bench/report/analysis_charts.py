"""The analysis drawn: the scorecard as a heat map, the Universal Scalability Law fits."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.analysis.frames import is_native
from bench.analysis.usl import UslFit
from bench.analysis.usl import usl as usl_curve
from bench.analysis.workload import Workload
from bench.report.plotting import (
    Chart,
    Palette,
    connections_axis,
    fmt_si,
    panel_title,
    save,
    small_multiples,
)

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
    return Chart(save(fig, out / HEATMAP), "Scorecard heat map",
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
    fig, axes = small_multiples(len(fits))
    top = max(y for f in fits for _, y in f.data)
    for ax, result in zip(axes, fits, strict=True):
        _usl_panel(ax, result, palette)
    # the panels share one x axis: its ticks are every level any model was measured at (the
    # last panel's own levels would otherwise win: a reference measured at 3 levels hid 8-128)
    connections_axis(axes[0], [n for f in fits for n, _ in f.data])
    axes[0].set_xlabel("")  # the figure's own label says it once
    axes[0].set_ylim(0, top * 1.15)
    axes[0].yaxis.set_major_formatter(FuncFormatter(fmt_si))
    fig.supxlabel("connections (log)", fontsize="medium")
    fig.supylabel("throughput (requests/s)", fontsize="medium")
    title = f"USL fit: {fits[0].family}"
    fig.suptitle(title)
    return Chart(save(fig, out / USL_CHART), title,
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
    connections_axis(ax, levels)
    ax.set_xlabel("")
    ax.tick_params(labelsize="small")
    ax.grid(True, which="major", alpha=0.3)
    panel_title(ax, palette.label(result.variant), style["color"])
