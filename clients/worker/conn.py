"""One client connection of a swarm worker (``Conn``), the base of the connections held beside
the load (``Held``: idle.py, slowloris.py), and the names socket errors are counted under."""

from __future__ import annotations

import errno
import socket
from collections import deque
from typing import Any

from clients._schedule import NEVER


class Conn:
    """One client connection and what it has in flight."""

    __slots__ = ("sock", "fd", "number", "recv_into", "times", "scheds", "kinds", "partial",
                 "out", "count", "base", "final", "connected", "started_ns", "dead",
                 "sequence", "position", "held", "left", "cycles", "drip", "hello")

    def __init__(self, sock: socket.socket, number: int, sequence: list[int], now: int,
                 held: Held | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.number = number
        self.recv_into = sock.recv_into
        self.times: deque[int] = deque()  # when each request in flight was sent
        self.scheds: deque[int] = deque()  # open loop: when each was scheduled
        self.kinds: deque[int] = deque()  # mixed workloads: the kind of each
        self.partial = bytearray()  # the start of a reply not yet complete
        self.out = bytearray()  # request bytes the socket did not take yet
        self.count = 0  # correct replies, all phases
        self.base = 0  # ``count`` when the measured window started
        self.final: int | None = None  # ``count`` when it ended
        self.connected = False
        self.started_ns = now
        self.dead = False
        self.sequence = sequence
        self.position = 0
        # held beside the load (idle.py, slowloris.py): no latency, no throughput, errors only
        self.held = held
        self.left: int | None = None  # churn.py: requests this connection has still to send
        self.cycles = 0  # connections made in this place (churn: one after another)
        self.drip = 0  # slowloris.py: bytes of the frame sent so far
        self.hello = False  # idle.py: its one request is waiting for its reply

    def attach(self, sock: socket.socket, now: int) -> None:
        """Churn: the next connection in this one's place (its counts carry on)."""
        self.sock = sock
        self.fd = sock.fileno()
        self.recv_into = sock.recv_into
        self.partial = bytearray()
        self.out = bytearray()
        self.connected = False
        self.started_ns = now
        self.dead = False


class Held:
    """Connections held beside the load (idle.py, slowloris.py): opened, read and timed out
    like the busy ones, never measured for latency or throughput; their errors are counted
    under ``label``. The worker (core.py) opens ``count`` of them, before the busy ones if
    ``first``, calls ``opened`` once each is established, ``reply`` when one waiting for a
    reply (``Conn.hello``) is readable, and ``tick`` once ``due_ns`` has come."""

    label = ""  # the error count (``clients._measure.Errors.add``)
    key = ""  # the block of the worker's partial record
    first = False  # opened before the busy connections (else after them)

    def __init__(self, count: int) -> None:
        self.count = count
        self.established = 0
        self.answered = 0  # those whose opening request was answered
        self.alive: int | None = None  # still open when the window ended

    def opened(self, c: Conn, now: int) -> None:
        self.established += 1

    def reply(self, c: Conn, now: int) -> None:
        """``c`` waits for a reply (``c.hello``) and is readable."""

    def due_ns(self) -> int:
        """When ``tick`` is next due (``NEVER``: it has nothing to do on its own)."""
        return NEVER

    def tick(self, now: int) -> None:
        """What is due by ``now``."""

    def figures(self, errors: dict[str, int]) -> dict[str, Any]:
        """The block of the worker's partial record (``errors``: this kind's, by kind)."""
        return {"connections": self.count, "established": self.established,
                "alive_at_end": self.alive, "errors": errors}


def socket_error(error: OSError) -> str:
    """The error count a failed read or write goes to."""
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    return f"socket_{errno.errorcode.get(error.errno or 0, error.errno)}"


def connect_error(code: int | None) -> str:
    """The error count a failed connect goes to."""
    if code == errno.ECONNREFUSED:
        return "connect_refused"
    if code == errno.ETIMEDOUT:
        return "connect_timeout"
    return f"connect_{errno.errorcode.get(code or 0, code)}"
