"""`poll`: one thread, a ``select.poll`` object holding the interest set between calls.

No FD_SETSIZE limit, but the kernel still walks every registered descriptor on each call.
"""

from __future__ import annotations

import argparse
import math
import select
import socket

from servers._eventloop import EventLoop

DESCRIPTION = "select.poll readiness loop (O(n) per wake-up, no descriptor limit)"
_IN = select.POLLIN | select.POLLPRI
_FAILED = select.POLLHUP | select.POLLERR | select.POLLNVAL


def _mask(read: bool, write: bool) -> int:
    return (_IN if read else 0) | (select.POLLOUT if write else 0)


class PollPoller:
    edge_triggered = False
    max_fd = None

    def __init__(self) -> None:
        self._poll = select.poll()

    def register(self, fd: int, read: bool, write: bool) -> None:
        self._poll.register(fd, _mask(read, write))

    def modify(self, fd: int, read: bool, write: bool) -> None:
        self._poll.modify(fd, _mask(read, write))

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
        milliseconds = None if timeout is None else math.ceil(timeout * 1000)
        return [
            (fd, bool(mask & _IN), bool(mask & select.POLLOUT), bool(mask & _FAILED))
            for fd, mask in self._poll.poll(milliseconds)
        ]


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    EventLoop(listener, PollPoller()).run()
