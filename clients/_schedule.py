"""Open loop: when each request is due, and waking up in time to send it.

A constant schedule puts request k at ``start + k / rate``, computed from k each time (no
drift from summed float steps); a Poisson schedule draws exponential gaps from its own seeded
generator. The schedule ends at the measured window's end: ``next_ns`` is then ``NEVER``.
Times are ``time.monotonic_ns``.

Sending on time (open loop promises its rate): the worker sets its timer slack to 1 ns
(Linux lets a sleep end
up to 50 µs late by default), sleeps until ``lead`` before a due send, where ``lead`` is what
waking up costs (learnt from the sleeps it makes: it settles where one wake-up in five is late),
and spins (polls without sleeping) through the rest, or whenever the sleep would be shorter
than ``MIN_SLEEP_NS``: at 20,000/s and more it spins between sends (``cpu.spin_percent``).
"""

from __future__ import annotations

import contextlib
import ctypes
import random

NEVER = 1 << 62  # a time that never comes
TIMER_SLACK_NS = 1
PR_SET_TIMERSLACK = 29  # <linux/prctl.h>
LEAD_START_NS = 20_000  # a first guess at the wake-up cost
LEAD_UP_NS = 4_000  # after a late wake-up...
LEAD_DOWN_NS = 1_000  # ...after an early one (so 1 in 5 is late), and per housekeeping pass
LEAD_MAX_NS = 100_000  # the wake-up cost is taken to be at most this
# a sleep shorter than this is spun through instead (so a spin lasts at most LEAD_MAX_NS plus
# this): a short sleep costs about as much CPU as it saves (measured at 20,000/s: sleeping the
# 10-20 µs gaps took 72% of a core in work, spinning through them 40%)
MIN_SLEEP_NS = 50_000


def set_timer_slack(nanoseconds: int) -> bool:
    """Let this thread's timed waits end this close to when they were asked to (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(nanoseconds), 0, 0, 0) == 0
    return False


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

    def set_end(self, end_ns: int) -> None:
        """No request due at or after ``end_ns`` (the window was decided during the warm-up)."""
        self._end_ns = end_ns
        if self.next_ns >= end_ns:
            self.next_ns = NEVER

    def stop(self) -> None:
        """No more requests."""
        self.next_ns = NEVER
