"""The swarm worker's time: warm-up, measured window, drain, and the housekeeping pass.

``Phases`` is the base of ``core.Worker``: its ``_housekeeping`` runs whenever the hot loop's
clock passes the time it returned last, and does what has come due, each part bounded so that
no pass holds up the load: phase changes, interval boundaries, measuring upkeep, connects,
the held connections' chores, timeouts, stop requests. Without a ``Control`` the timeline is
fixed; with one (``--steady``) the parent opens the window once the load is steady.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Protocol

from clients._measure import Measurements
from clients._schedule import NEVER
from clients.plan import Timeline, WorkerPlan
from clients.worker.conn import Conn, Held

CHORE_NS = 5_000_000  # timeouts, stop requests, the end of the drain: a look every 5 ms...
CHORE_BATCH = 256  # ...at this many connections' timeouts (the rest at the next looks)
# steady-state warm-up (``Control``): a worker reports its replies and answered connections
# every slice, and looks for the parent's decision to open the window at every chore (5 ms:
# the parent announces the window WINDOW_LEAD_S ahead, clients/_steady.py)
WARM_SLICE_NS = 50_000_000


class Stop:
    """Set by SIGINT/SIGTERM (process.py): finish now with what has been measured."""

    requested = False


class Control(Protocol):
    """The parent's hand on a worker's warm-up: without one the timeline is fixed.

    ``report`` sends one warm-up slice (its index, the replies in it, the busy connections
    answered at least once so far and those established); ``window`` returns the parent's
    decision, (window, end, drain) in ``time.monotonic_ns``, once it has been made."""

    def report(self, index: int, replies: int, answered: int, established: int) -> None: ...

    def window(self) -> tuple[int, int, int] | None: ...


class Phases:
    """Where a worker is on its timeline, and the pass that moves it on."""

    # the worker's (core.py), read and acted on here
    plan: WorkerPlan
    m: Measurements
    conns: dict[int, Conn]
    all_conns: list[Conn]  # the busy connections
    held: list[Held]
    timed: list[Held]  # the held kinds with chores of their own
    established: int
    live: int
    to_open: int
    next_connect: int

    def __init__(self, timeline: Timeline, control: Control | None) -> None:
        self.timeline = timeline
        self.control = control
        self.next_warm = timeline.load_ns + WARM_SLICE_NS if control is not None else NEVER
        self.warm_index = 0
        self.warm_replies = 0  # replies counted at the last slice's end
        self.phase = "warmup"  # then "window", "drain"
        self.sending = True  # new requests go out (until the window ends)
        self.finished = False
        self.stopped: str | None = None  # why the run ended early
        self.next_chore = timeline.start_ns
        self.watch: list[Conn] = []  # the connections the timeout looks go through...
        self.watch_at = 0  # ...and the next one to look at
        self.parent = os.getppid()

    def _open_due(self, now: int) -> None:
        """Start the connections whose turn has come (core.py)."""
        raise NotImplementedError

    def _lose(self, c: Conn, reason: str | None) -> None:
        """Close ``c``, counting ``reason`` (core.py)."""
        raise NotImplementedError

    def _housekeeping(self, now: int) -> int:
        """Phase changes, interval boundaries, measuring upkeep, connects, held connections'
        chores, timeouts, stops: each bounded in time, so that no pass holds up the load.
        The next time to come."""
        timeline = self.timeline
        m = self.m
        if self.phase == "warmup" and now >= self.next_warm:
            self._report_warm(now)
            timeline = self.timeline
        if self.phase == "warmup" and now >= timeline.window_ns:
            self._start_window(now)
        while self.phase == "window" and now >= min(m.next_interval, timeline.end_ns):
            until = min(m.next_interval, timeline.end_ns)
            m.end_interval(until)
            if until >= timeline.end_ns:
                self._end_window(until)
        tend = m.tend(now) if self.phase == "window" else NEVER
        if self.to_open and now >= self.next_connect:
            self._open_due(now)
        for held in self.timed:
            if now >= held.due_ns():
                held.tick(now)
        if now >= self.next_chore:
            self._chores(now)
        if self.finished:
            return now
        upcoming = [self.next_chore, tend]
        if self.timed:  # most runs hold none: no generator per pass for them
            upcoming += [held.due_ns() for held in self.timed]
        if self.phase == "warmup":
            upcoming += (timeline.window_ns, self.next_warm)
        elif self.phase == "window":
            upcoming.append(min(m.next_interval, timeline.end_ns))
        if self.to_open:
            upcoming.append(self.next_connect)
        return min(upcoming)

    def _chores(self, now: int) -> None:
        self.next_chore = now + CHORE_NS
        if self.phase == "warmup" and self.control is not None:
            self._take_window()
        self._look_for_timeouts(now)
        if Stop.requested or os.getppid() != self.parent:
            self._finish(now, "interrupted" if Stop.requested else "parent exited")
        elif not self.live and not self.to_open:
            lost = "no connection left" if self.established else "no connection established"
            self._finish(now, None if self.phase == "drain" else lost)
        elif self.phase == "drain" and (now >= self.timeline.drain_ns or not any(
                c.times for c in self.conns.values())):
            self._finish(now, None)

    def _look_for_timeouts(self, now: int) -> None:
        """Give up connections whose connect or oldest request took too long: at most
        CHORE_BATCH of them per look, so that ten thousand connections cost no pause."""
        if self.watch_at >= len(self.watch):
            self.watch = list(self.conns.values())
            self.watch_at = 0
        limit = now - self.plan.timeout_ns
        end = min(self.watch_at + CHORE_BATCH, len(self.watch))
        for c in self.watch[self.watch_at:end]:
            if c.dead:
                continue
            if not c.connected:
                if c.started_ns < limit:
                    self._lose(c, "connect_timeout")
            elif c.times and c.times[0] < limit:
                self._lose(c, "timeout")
        self.watch_at = end

    def _report_warm(self, now: int) -> None:
        """One warm-up slice to the parent: its replies, the busy connections answered at
        least once and those established (O(connections), every slice of the warm-up only)."""
        total = answered = 0
        for c in self.all_conns:  # the busy connections only
            total += c.count
            if c.count:
                answered += 1
        assert self.control is not None
        self.control.report(self.warm_index, total - self.warm_replies,
                            min(answered, self.plan.connections)
                            + sum(held.answered for held in self.held),
                            self.established + sum(held.established for held in self.held))
        self.warm_index += 1
        self.warm_replies = total
        self.next_warm += WARM_SLICE_NS

    def _take_window(self) -> bool:
        """The parent's window, once decided: the timeline and the intervals follow it.
        Whether it was."""
        assert self.control is not None
        decided = self.control.window() if self.next_warm != NEVER else None
        if decided is None:
            return False
        window_ns, end_ns, drain_ns = decided
        self.timeline = dataclasses.replace(self.timeline, window_ns=window_ns, end_ns=end_ns,
                                            drain_ns=drain_ns)
        self.m.window_ns = self.m.next_interval = window_ns
        self.next_warm = NEVER
        return True

    def _start_window(self, now: int) -> None:
        """Warm-up is over: forget its latencies, note counts and CPU."""
        self.phase = "window"
        for c in self.all_conns:  # O(connections), once: ~0.5 ms for ten thousand
            c.base = c.count
        self.m.start_window(now)

    def _end_window(self, now: int) -> None:
        """The measured window is over: no new requests; wait for the ones in flight."""
        self.phase = "drain"
        self.sending = False
        for c in self.all_conns:
            if c.final is None:
                c.final = c.count
        for held in self.held:
            held.alive = 0
        for c in self.conns.values():
            if c.held is not None and c.connected:
                c.held.alive = (c.held.alive or 0) + 1
        self.m.end_window(now)

    def _finish(self, now: int, reason: str | None) -> None:
        """End the run now; if the window was still open, it ends here (partial figures)."""
        if self.phase == "window":
            self.m.end_interval(now)
            self._end_window(now)
        self.finished = True
        self.stopped = reason
