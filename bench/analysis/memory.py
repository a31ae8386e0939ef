"""Memory per connection: the slope of the server's RSS over the connections it actually held.

Dividing a trial's RSS growth by the connections the swarm was configured with credits a
server with memory it never spent on connections it never accepted (a loop that held a third
of them looks three times leaner), and one trial's growth mixes the per-connection cost with
everything else that grew (buffers, the allocator's arenas, a thread pool). So the figure is a
slope: per model and round, RSS at the window's peak against the descriptors the server held
(``held_max``: its descriptors at the peak less those before any client, frames.py), over the
closed-loop cases of one request mix at three or more connection counts, fitted by least
squares (scipy's ``linregress``). Only trials whose per-connection figures are valid count
(validity.py: no starved, unsteady or turned-away connections). RSS moves in pages, so the
slope's resolution is a page over the span of connections held.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from scipy import stats

from bench.analysis import validity

PAGE_BYTES = 4096
MIN_COUNTS = 3  # distinct connection counts a slope needs
FIGURE = "rss_per_connection_bytes"


@dataclass(frozen=True)
class Slopes:
    """Per variant and round, bytes of RSS per connection held; and what they rest on."""

    paired: dict[str, dict[int, float]]  # variant -> round -> slope (bytes per connection)
    cases: tuple[str, ...]  # the cases the fits used
    resolution: dict[str, float]  # variant -> bytes (a page over its span of connections)


def slopes(frame: pd.DataFrame, cases: list[str]) -> Slopes:
    """The RSS slope of every variant and round over ``cases`` (valid trials only)."""
    rows = frame[frame["case"].isin(cases) & frame[validity.ok_column(FIGURE)].astype(bool)]
    rows = rows.dropna(subset=["rss_max", "held_max"])
    paired: dict[str, dict[int, float]] = {}
    resolution: dict[str, float] = {}
    for (variant, repeat), group in rows.groupby(["variant", "repeat"], sort=False):
        held = group["held_max"].astype(float)
        if held.nunique() < MIN_COUNTS:
            continue
        fit = stats.linregress(held, group["rss_max"].astype(float))
        paired.setdefault(str(variant), {})[int(repeat)] = max(0.0, float(fit.slope))
        span = float(held.max() - held.min())
        resolution[str(variant)] = max(resolution.get(str(variant), 0.0), PAGE_BYTES / span)
    return Slopes(paired, tuple(cases), resolution)


def slope_cases(frame: pd.DataFrame, widest: str) -> list[str]:
    """The closed-loop cases of ``widest``'s mix and group family (one request mix, several
    connection counts): those a slope is fitted over."""
    rows = frame[(frame["mode"] != "open")]
    mix = rows.loc[rows["case"] == widest, "mix"]
    if mix.empty:
        return []
    same = rows[(rows["mix"] == mix.iloc[0]) & (rows["pipeline"] == 1)]
    return sorted(set(same["case"].astype(str)))
