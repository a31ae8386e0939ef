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

from servers._eventloop import EventLoop, PollLikePoller

DESCRIPTION = "select.epoll readiness loop (O(ready) per wake-up; --trigger level|edge)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trigger", choices=("level", "edge"), default="level",
                        help="epoll notification mode (default: level)")


class EpollPoller(PollLikePoller):
    _new_poll_object = select.epoll
    _READ = select.EPOLLIN | select.EPOLLPRI
    _READABLE = _READ | select.EPOLLRDHUP  # the peer's half-close: the next recv sees EOF
    _WRITE = select.EPOLLOUT
    _FAILED = select.EPOLLHUP | select.EPOLLERR
    _PER_SECOND = 1  # epoll.poll() takes seconds
    # edge-triggered: registered once for both directions; readiness comes as edges
    _EDGE_MASK = _READ | _WRITE | select.EPOLLRDHUP | select.EPOLLET

    def __init__(self, edge_triggered: bool) -> None:
        super().__init__()
        self.edge_triggered = edge_triggered

    def _mask(self, read: bool, write: bool) -> int:
        return self._EDGE_MASK if self.edge_triggered else super()._mask(read, write)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    EventLoop(listener, EpollPoller(options.trigger == "edge")).run()
