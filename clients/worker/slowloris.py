"""Slowloris (``WorkerPlan.slowloris``): extra connections, opened before the busy ones (the
attack is already there when the clients come), that send the first ``slowloris_first`` bytes
of a frame (``slowloris_frame``) and then one more byte every ``slowloris_interval_ns``, never
the last.

The bytes go out from the worker's housekeeping pass (``tick``), at most DRIP_BATCH per pass,
the first ones spread over one interval so that a thousand connections do not send at once.
Their errors are kept apart from the run's (the record's ``slowloris``): those connections
are the attack, and a server turning them away is a figure of its own.
"""

from __future__ import annotations

import heapq
import os
from typing import Any

from clients._schedule import NEVER
from clients.worker.conn import Conn, Held, socket_error
from clients.worker.core import Worker

DRIP_BATCH = 64  # slowloris bytes sent per housekeeping pass (the rest at the next ones)
DRIP_SPREAD = 1000  # the first drips are spread over one interval in this many steps


class Slowloris(Held):
    """Connections that send a frame a byte at a time, never finishing it."""

    label = "slow"
    key = "slowloris"
    first = True

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.plan.slowloris)
        self.worker = worker
        self.frame = worker.plan.slowloris_frame
        self.interval = worker.plan.slowloris_interval_ns
        self.bytes_sent = 0
        self.drips: list[tuple[int, int, Conn]] = []  # heap: (next byte due, number, conn)

    def opened(self, c: Conn, now: int) -> None:
        """The first part of the frame now, then a byte at a time."""
        self.established += 1
        self._send(c, self.worker.plan.slowloris_first)
        step = (c.number * 7919) % DRIP_SPREAD + 1
        heapq.heappush(self.drips, (now + self.interval * step // DRIP_SPREAD, c.number, c))

    def due_ns(self) -> int:
        return self.drips[0][0] if self.drips else NEVER

    def tick(self, now: int) -> None:
        """One more byte on every slow connection whose turn has come (at most DRIP_BATCH)."""
        heap = self.drips
        batch = DRIP_BATCH
        while heap and heap[0][0] <= now and batch:
            batch -= 1
            _, number, c = heapq.heappop(heap)
            if c.dead:
                continue
            self._send(c, 1)
            if not c.dead:
                heapq.heappush(heap, (now + self.interval, number, c))

    def _send(self, c: Conn, count: int) -> None:
        """Send the next ``count`` bytes of the frame, never its last byte."""
        end = min(c.drip + count, len(self.frame) - 1)
        if end <= c.drip:
            return
        try:
            sent = os.write(c.fd, self.frame[c.drip:end])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self.worker._lose(c, socket_error(error))
            return
        c.drip += sent
        self.bytes_sent += sent

    def figures(self, errors: dict[str, int]) -> dict[str, Any]:
        return {**super().figures(errors), "bytes_sent": self.bytes_sent}
