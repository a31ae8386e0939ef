"""Open loop: when each request is due, on the run's monotonic clock (``time.monotonic_ns``).

A constant schedule puts request k at ``start + k / rate``, computed from k each time (no
drift from summed float steps); a Poisson schedule draws exponential gaps from its own seeded
generator. The schedule ends at the measured window's end: ``next_ns`` is then ``NEVER``.
"""

from __future__ import annotations

import random

NEVER = 1 << 62  # a time that never comes


class Schedule:
    """The due time of the next request, and how far the schedule waited for a connection."""

    __slots__ = ("next_ns", "waiting_until", "_start_ns", "_end_ns", "_k", "_spacing",
                 "_rate", "_poisson", "_random")

    def __init__(self, start_ns: int, end_ns: int, rate: float, arrivals: str,
                 seed: int) -> None:
        self._start_ns = start_ns
        self._end_ns = end_ns
        self._k = 0
        self._spacing = 1e9 / rate if rate > 0 else 0.0
        self._rate = rate
        self._poisson = arrivals == "poisson"
        self._random = random.Random(seed)
        self.next_ns = start_ns if rate > 0 else NEVER
        # requests due up to here found every connection busy: their wait is the server's
        self.waiting_until = -1

    def advance(self) -> int:
        """Move on to the request after ``next_ns``; its due time (``NEVER`` past the end)."""
        self._k += 1
        if self._poisson:
            step = self._random.expovariate(self._rate) * 1e9
            due = self.next_ns + max(1, int(step))
        else:
            due = self._start_ns + int(self._k * self._spacing)
        self.next_ns = due if due < self._end_ns else NEVER
        return self.next_ns

    def stop(self) -> None:
        """No more requests."""
        self.next_ns = NEVER
