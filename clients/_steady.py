"""When the load is steady enough to measure, and how long the window must then be.

A window that opens on a clock can open before the server has accepted every connection (a
loop that accepts one client per pass), before a slow start-up is over (an import or a JIT
warming), or while throughput still climbs: its figures then describe a transient, and a
throughput divided among connections the server never served is not the model's. So the swarm
gates the window (``clients.swarm`` with ``SwarmConfig.steady``): each worker reports, every
``SLICE_S`` of the warm-up, its replies and the busy connections answered at least once; the
window opens once

- every socket is established and every busy connection has been answered at least once, and
- the last ``SETTLE_SLICES`` slices, all after that, agree: each within ``TOLERANCE`` of their
  mean (open loop: of the offered rate),

or when the warm-up cap (``SwarmConfig.warmup``) runs out, in which case the record says the
load never got steady and why ("answered 335 of 1,000 connections in 0.45 s"), and the analysis
ranks none of its figures (bench/analysis/validity.py).

The window's length follows from the settled rate: long enough for ``min_requests`` replies
(every percentile that is ranked needs enough samples beyond it), at least ``duration`` and at
most ``max_duration`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SLICE_S = 0.05
SETTLE_SLICES = 3
TOLERANCE = 0.10
WINDOW_LEAD_S = 0.025  # the window opens this long after the decision: every worker hears it
FALLBACK_S = 0.5  # beyond the cap, a worker that heard nothing opens the window on its own
MARGIN = 1.05  # the window is sized for this much more than min_requests at the settled rate


@dataclass
class Slice:
    """One warm-up slice, summed over the workers that reported it."""

    replies: int = 0
    answered: int = 0
    established: int = 0
    reports: int = 0


@dataclass
class SteadyGate:
    """The parent's view of the warm-up: slices as they come, and the decision."""

    workers: int
    connections: int  # busy connections: each must be answered once
    sockets: int  # every socket the swarm holds: each must be established
    offered_rps: float | None  # open loop: the offered rate
    slices: dict[int, Slice] = field(default_factory=dict)
    complete: int = 0  # slices every worker has reported, from 0 on

    def add(self, index: int, replies: int, answered: int, established: int) -> None:
        """A worker's report of slice ``index``."""
        entry = self.slices.setdefault(index, Slice())
        entry.replies += replies
        entry.answered += answered
        entry.established += established
        entry.reports += 1
        while self.slices.get(self.complete, Slice()).reports >= self.workers:
            self.complete += 1

    def done(self) -> list[Slice]:
        """The slices every worker has reported, in order."""
        return [self.slices[i] for i in range(self.complete)]

    def settled(self) -> bool:
        """Whether the load is steady now (``reason`` says why not)."""
        return self.reason() is None

    def reason(self) -> str | None:
        """Why the load is not steady yet, in words; None when it is."""
        done = self.done()
        if not done:
            return "no warm-up slice reported"
        last = done[-1]
        if last.established < self.sockets:
            return f"established {last.established:,} of {self.sockets:,} connections"
        if last.answered < self.connections:
            return f"answered {last.answered:,} of {self.connections:,} connections"
        full = [s for s in done if s.answered >= self.connections]
        # the first fully answered slice may hold the tail of the ramp: it does not count
        recent = full[1:][-SETTLE_SLICES:]
        if len(recent) < SETTLE_SLICES:
            return "throughput not yet settled (too few slices since every connection answered)"
        rates = [s.replies / SLICE_S for s in recent]
        centre = self.offered_rps or sum(rates) / len(rates)
        spread = max(abs(rate / centre - 1) for rate in rates) if centre > 0 else float("inf")
        if spread > TOLERANCE:
            return (f"throughput not settled: the last {SETTLE_SLICES} slices of "
                    f"{SLICE_S * 1000:.0f} ms vary up to {spread:.0%} from "
                    + ("the offered rate" if self.offered_rps else "their mean")
                    + f" (tolerance {TOLERANCE:.0%})")
        return None

    def settled_rate(self) -> float:
        """Replies per second over the last settled slices (the offered rate in open loop)."""
        if self.offered_rps:
            return self.offered_rps
        recent = self.done()[-SETTLE_SLICES:]
        return sum(s.replies for s in recent) / (SLICE_S * len(recent)) if recent else 0.0

    def record(self, reached: bool, warmup_s: float, cap_s: float, reason: str | None
               ) -> dict[str, Any]:
        """The record's ``steady`` block."""
        done = self.done()
        last = done[-1] if done else Slice()
        return {"checked": True, "reached": reached, "warmup_s": round(warmup_s, 3),
                "cap_s": cap_s, "reason": reason, "connections": self.connections,
                "sockets": self.sockets, "answered": last.answered,
                "established": last.established, "slice_s": SLICE_S,
                "settle_slices": SETTLE_SLICES, "tolerance": TOLERANCE,
                "slices_rps": [round(s.replies / SLICE_S, 1) for s in done]}


def window_length_s(rate_rps: float, min_requests: int, duration: float,
                    max_duration: float) -> float:
    """The window: long enough for ``min_requests`` at ``rate_rps`` (with a margin), at least
    ``duration``, at most ``max_duration`` seconds."""
    wanted = min_requests * MARGIN / rate_rps if rate_rps > 0 and min_requests else 0.0
    return min(max(duration, wanted), max(duration, max_duration))
