"""Churn (``requests_per_connection``): a closed loop whose connections each make that many
requests, are closed once every one is answered, and a fresh connection takes each one's place.

It runs off the fast path (core.py): a connection closes after its last reply, which the fast
path does not look for. The window times each new connection's connect and each connection's
cycle (connect to last reply): the record's ``churn``.
"""

from __future__ import annotations

from clients.worker.closed_loop import ClosedLoop
from clients.worker.conn import Conn


class Churn(ClosedLoop):
    """Closed loop, a connection lasting ``requests_per_connection`` requests."""

    reads_fast = False

    def _start(self, c: Conn, now: int) -> None:
        c.left = self.plan.requests_per_connection
        if self.phase == "window":
            self.m.churn_connect_ns.append(now - c.started_ns)
        self._next(c, self.plan.pipeline, now)

    def _refill(self, c: Conn, done: int, now: int) -> None:
        self._next(c, done, now)

    def _next(self, c: Conn, count: int, now: int) -> None:
        """Up to ``count`` more of this connection's requests; once it has sent them all and
        every one is answered, it closes and a fresh one takes its place."""
        if self.sending and c.left:
            sent = min(count, c.left)
            c.left -= sent
            self._send_requests(c, sent, now)
        elif not c.times:
            self._recycle(c, now)

    def _recycle(self, c: Conn, now: int) -> None:
        """Close ``c`` (its cycle counted in the window) and, while requests are still being
        sent, connect again in its place."""
        if self.phase == "window":
            self.m.churn_cycle_ns.append(now - c.started_ns)
        self._drop(c)
        opened = self._open_socket(None) if self.sending else None
        if opened is None:  # the window is over, or the connect failed (counted)
            self._retire(c)
            return
        sock, code = opened
        c.attach(sock, now)
        self._watch(c, code, now)
