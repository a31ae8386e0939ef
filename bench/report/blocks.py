"""The report's tiny document model (sections of paragraphs, tables, charts, preformatted text)
and how its numbers are written, shared by every part of the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A table of already formatted cells; ``numeric`` columns are right-aligned.

    ``styles`` and ``titles`` colour and explain single cells in HTML ((row, column) -> CSS
    declarations, tooltip text); Markdown shows the text alone, so a cell's text must carry
    its meaning without the colour.
    """

    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    footnotes: list[str] = field(default_factory=list)
    styles: dict[tuple[int, int], str] = field(default_factory=dict)
    titles: dict[tuple[int, int], str] = field(default_factory=dict)
    css_class: str = ""


@dataclass
class Pre:
    """Preformatted text (a stderr tail) under a short heading."""

    heading: str
    text: str


@dataclass
class Bullets:
    """A list of sentences."""

    items: list[str]


@dataclass
class Section:
    """A titled part of the report: paragraphs (str), tables, charts and preformatted text."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2
    collapsed: bool = False  # HTML only: folded into <details>


# ---------------------------------------------------------------- number formatting


def missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_rate(value: Any) -> str:
    """Requests per second with a thousands separator ('—' when missing)."""
    return "—" if missing(value) else f"{value:,.0f}"


def fmt_us(value: Any) -> str:
    """A latency in µs as '850 µs', '1.23 ms' or '2.5 s'."""
    if missing(value):
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.3g} s"
    if value >= 1e3:
        return f"{value / 1e3:.3g} ms"
    return f"{value:.3g} µs"


def fmt_bytes(value: Any) -> str:
    """Bytes as '512 B', '12.3 KiB', '4.1 MiB'."""
    if missing(value):
        return "—"
    for limit, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= limit:
            return f"{value / limit:.3g} {unit}"
    return f"{value:.0f} B"


def fmt_num(value: Any, digits: int = 3) -> str:
    """A plain figure to ``digits`` significant digits."""
    return "—" if missing(value) else f"{value:.{digits}g}"


def fmt_ratio(value: Any, bound: str = "") -> str:
    """A ratio as '0.42×' ('≤ 0.42×' when it is an upper bound; '—' when missing)."""
    if missing(value):
        return "—"
    return f"{bound + ' ' if bound else ''}{value:.2g}×" if value < 10 \
        else f"{bound + ' ' if bound else ''}{value:.0f}×"


def fmt_spread(row: Any, metric: str, fmt: Any) -> str:
    """'median [min–max]' of an aggregate row's valid figures, or just the median of one."""
    median = row[f"{metric}_median"]
    low, high = row[f"{metric}_min"], row[f"{metric}_max"]
    if missing(median):
        return "—"
    count = row.get(f"{metric}_n", row.get("n_valid", 1)) if hasattr(row, "get") else 1
    if count > 1 and low != high:
        return f"{fmt(median)} [{fmt(low)}–{fmt(high)}]"
    return fmt(median)


FIGURE_FORMAT = {
    "throughput_rps": lambda v: f"{fmt_rate(v)} req/s",
    "rate_within_slo": lambda v: f"{fmt_rate(v)} req/s",
    "p99_us": fmt_us, "cpu_us_per_request": fmt_us, "cpu_us_per_connection": fmt_us,
    "reference_kind_p99_us": fmt_us, "connections_per_s": lambda v: f"{fmt_rate(v)} conn/s",
    "rss_per_connection_bytes": fmt_bytes, "rss_per_held_connection_bytes": fmt_bytes,
}


def fmt_figure(value: Any, figure: str) -> str:
    """A figure in its unit ('—' when missing)."""
    return "—" if missing(value) else FIGURE_FORMAT.get(figure, fmt_num)(value)
