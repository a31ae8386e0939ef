"""Open loop: requests are sent on a schedule (``clients._schedule``: uniform or Poisson
arrivals at the worker's share of ``rate``), whatever the server's speed, on whichever
connection has a free slot (at most ``pipeline`` in flight each).

Latency counts from when a request was due, not when it left (corrected for coordinated
omission); the uncorrected one and the schedule's lag are kept too, the lag split into the
client's own lateness (it had a free connection) and the server's (every connection was busy).
The loop wakes up early by what a wake-up costs and spins through the rest; the fast path
(core.py's docstring) is served inline.
"""

from __future__ import annotations

import os
import select
import time
from collections import deque
from collections.abc import Callable, Sequence

from clients._measure import Progress
from clients._schedule import (
    LEAD_DOWN_NS,
    LEAD_MAX_NS,
    LEAD_START_NS,
    LEAD_UP_NS,
    MIN_SLEEP_NS,
    NEVER,
    Schedule,
)
from clients.plan import Timeline, WorkerPlan
from clients.worker.conn import Conn, Held, socket_error
from clients.worker.core import IN, Worker
from clients.worker.phases import Control


class OpenLoop(Worker):
    """Send on the schedule, on any connection with a free slot."""

    open = True

    def __init__(self, plan: WorkerPlan, timeline: Timeline,
                 progress: Progress | None = None, control: Control | None = None,
                 held: Sequence[Callable[[Worker], Held]] = (),
                 drained: Callable[[], None] | None = None) -> None:
        super().__init__(plan, timeline, progress, control, held, drained)
        # one entry per free in-flight slot, and when the next request is due
        self.free: deque[Conn] = deque()
        self.schedule = Schedule(timeline.load_ns, timeline.end_ns, plan.rate, plan.arrivals,
                                 plan.seed)

    def _start(self, c: Conn, now: int) -> None:
        self.free.extend([c] * self.plan.pipeline)

    def _refill(self, c: Conn, done: int, now: int) -> None:
        self.free.extend([c] * done)

    def _complete(self, c: Conn, now: int) -> None:
        self.m.samples.lat_u.append(now - c.times.popleft())
        self._answered(c, now - c.scheds.popleft())

    def _complete_error(self, c: Conn, outcome: str) -> None:
        c.scheds.popleft()
        super()._complete_error(c, outcome)

    def _take_window(self) -> bool:
        if not super()._take_window():
            return False
        self.schedule.set_end(self.timeline.end_ns)
        return True

    def _end_window(self, now: int) -> None:
        self.schedule.stop()
        super()._end_window(now)

    def _loop(self) -> None:
        poll = self.ep.poll
        ready = [self.ep.fileno()]  # select's read list, built once
        wait = select.select
        clock = time.monotonic_ns
        read = os.read
        fast = self.fast
        chunk = self.fast_chunk
        free = self.free
        schedule = self.schedule
        m = self.m
        samples = m.samples
        free_append = free.append
        check = self.plan.kinds[0].check
        unusual = self._unusual_read
        event = self._event
        send_due = self._send_due
        readable = IN
        lead = LEAD_START_NS  # how long before a due send to wake: what waking up costs
        lead_up, lead_down, lead_max = LEAD_UP_NS, LEAD_DOWN_NS, LEAD_MAX_NS
        shortest = MIN_SLEEP_NS  # a sleep shorter than this is spun instead
        spun = 0  # time spent polling on purpose until a send fell due
        next_check = 0
        now = clock()
        while True:
            if now >= next_check:
                m.cpu.spin_ns = spun
                if lead > lead_down:  # drift down: a rate that only spins never sleeps to learn
                    lead -= lead_down
                next_check = self._housekeeping(now)
                if self.finished:
                    return
                lat_append = samples.lat.append  # housekeeping may have started new series
                lat_u_append = samples.lat_u.append
            due = schedule.next_ns if free else NEVER
            if due < next_check:
                gap = due - now
                if gap > lead + shortest:  # sleep (select: µs) until waking would end at due
                    if not wait(ready, (), (), (gap - lead) / 1e9)[0]:
                        # slept it out: learn the wake-up cost (it settles where 1 wake-up in
                        # LEAD_UP/LEAD_DOWN + 1 is late)
                        if clock() > due:
                            lead = lead + lead_up if lead < lead_max else lead_max
                        elif lead > lead_down:
                            lead -= lead_down
                    events = poll(0)
                    now = clock()
                else:  # the wait is shorter than a wake-up and a sleep worth its cost: spin
                    # until the send is due (or a reply comes)
                    then = clock()
                    while True:
                        events = poll(0)
                        now = clock()
                        if events or now >= due:
                            break
                    spun += now - then
            else:  # select here too: epoll_wait rounds up to whole ms, which a send due just
                # after the housekeeping pass would wait out
                if next_check > now:
                    wait(ready, (), (), (next_check - now) / 1e9)
                events = poll(0)
                now = clock()
            if not free and schedule.next_ns <= now:  # fell due while every connection was busy:
                schedule.waiting_until = now  # their wait is the server's, not the client's
            # the fast path's read, as in closed_loop.py (inline in each loop on purpose: a
            # function shared by the two would cost a call per reply)
            for fd, mask in events:
                c = fast[fd]
                if c is None or mask != readable:
                    event(fd, mask, now)
                    continue
                try:
                    data = read(fd, chunk)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:
                    self._lose(c, socket_error(error))
                    continue
                if data != check:
                    unusual(c, data, now)
                    continue
                lat_append(now - c.scheds.popleft())
                lat_u_append(now - c.times.popleft())
                c.count += 1
                free_append(c)
            if free and schedule.next_ns <= now:
                send_due(clock())  # read again: the replies above took time, lateness is real
                now = clock()  # and the next wait counts from after these sends

    def _send_due(self, now: int) -> None:
        """Send every scheduled request that is due, while a connection is free."""
        free = self.free
        kinds = self.plan.kinds
        uniform = self.uniform
        schedule = self.schedule
        advance = schedule.advance
        waiting_until = schedule.waiting_until
        samples = self.m.samples
        lag_append = samples.lag.append
        own_append = samples.own_lag.append
        write = self._write
        sched = schedule.next_ns
        while sched <= now and free:
            c = free.popleft()
            if c.dead:
                continue
            if uniform:
                frame = kinds[0].frame
            else:
                index = c.sequence[c.position]
                c.position = (c.position + 1) % len(c.sequence)
                c.kinds.append(index)
                frame = kinds[index].frame
            c.times.append(now)
            c.scheds.append(sched)
            write(c, frame)
            lag = now - sched
            lag_append(lag)
            if sched > waiting_until:  # it had a free connection: any lateness is the client's
                own_append(lag)
            sched = advance()
        if sched <= now:  # the rest must wait for a connection to come free
            schedule.waiting_until = now
