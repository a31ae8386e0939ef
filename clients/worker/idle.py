"""Idle connections (``idle``): opened after the busy ones, they each ask one small request
(``WorkerPlan.idle_frame``) and, once answered, hold still for the rest of the run.

The answer shows the server accepted the connection and watches it: an unaccepted one waits
in the listen queue and costs the server nothing. Their errors are counted among the run's,
and on their own (the record's ``idle``).
"""

from __future__ import annotations

import os
from typing import Any

from clients.worker.conn import Conn, Held, socket_error
from clients.worker.core import Worker


class Idle(Held):
    """Connections that ask once and then hold still."""

    label = "idle"
    key = "idle"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.plan.idle)
        self.worker = worker
        self.frame = worker.plan.idle_frame
        self.expected = worker.plan.idle_reply

    def opened(self, c: Conn, now: int) -> None:
        """Its one request (a few bytes: the socket takes it whole)."""
        self.established += 1
        if not self.frame:
            return
        try:
            sent = os.write(c.fd, self.frame)
        except OSError as error:
            self.worker._lose(c, socket_error(error))
            return
        if sent < len(self.frame):
            self.worker._lose(c, "short_write")
            return
        c.hello = True

    def reply(self, c: Conn, now: int) -> None:
        """Read its one reply; anything else goes to the worker's slow path, which names it
        (an ERROR 4 turning the connection away, say) and ends the connection."""
        try:
            data = c.sock.recv(len(self.expected) - len(c.partial))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self.worker._lose(c, socket_error(error))
            return
        if not data:
            self.worker._lose(c, "eof")
            return
        c.partial += data
        if not self.expected.startswith(bytes(c.partial)):
            c.hello = False
            data = bytes(c.partial)
            c.partial.clear()
            self.worker._unusual_read(c, data, now)
        elif len(c.partial) == len(self.expected):
            c.partial.clear()
            c.hello = False
            self.answered += 1

    def figures(self, errors: dict[str, int]) -> dict[str, Any]:
        return {**super().figures(errors), "answered": self.answered}
