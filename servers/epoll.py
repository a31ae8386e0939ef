"""`epoll`: one thread, Linux ``epoll``: the kernel keeps the interest set and reports only
the ready descriptors, so a wake-up costs O(ready), not O(watched).

``--trigger level`` (default) re-registers interest as it changes (an ``epoll_ctl`` when
output starts or stops waiting) and reads once per readiness report; ``--trigger edge``
registers every socket once for both directions and must read until EAGAIN, costing one
failed ``recv`` per drain. See the README for the measured difference.
"""

from __future__ import annotations

import argparse
import select
import socket

from servers._eventloop import EventLoop

DESCRIPTION = "select.epoll readiness loop (O(ready) per wake-up; --trigger level|edge)"
_IN = select.EPOLLIN | select.EPOLLPRI
_FAILED = select.EPOLLHUP | select.EPOLLERR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trigger", choices=("level", "edge"), default="level",
                        help="epoll notification mode (default: level)")


class EpollPoller:
    max_fd = None

    def __init__(self, edge_triggered: bool) -> None:
        self.edge_triggered = edge_triggered
        self._epoll = select.epoll()

    def _mask(self, read: bool, write: bool) -> int:
        if self.edge_triggered:  # once for both directions; readiness comes as edges
            return _IN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
        return (_IN if read else 0) | (select.EPOLLOUT if write else 0)

    def register(self, fd: int, read: bool, write: bool) -> None:
        self._epoll.register(fd, self._mask(read, write))

    def modify(self, fd: int, read: bool, write: bool) -> None:
        self._epoll.modify(fd, self._mask(read, write))

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
        events = self._epoll.poll(-1 if timeout is None else timeout)
        return [
            (fd, bool(mask & (_IN | select.EPOLLRDHUP)), bool(mask & select.EPOLLOUT),
             bool(mask & _FAILED))
            for fd, mask in events
        ]


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    EventLoop(listener, EpollPoller(options.trigger == "edge")).run()
