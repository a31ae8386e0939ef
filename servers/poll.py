"""`poll`: one thread, a ``select.poll`` object holding the interest set between calls.

No FD_SETSIZE limit, but the kernel still walks every registered descriptor on each call.
"""

from __future__ import annotations

import argparse
import select
import socket

from servers._eventloop import EventLoop, PollLikePoller

DESCRIPTION = "select.poll readiness loop (O(n) per wake-up, no descriptor limit)"


class PollPoller(PollLikePoller):
    _new_poll_object = select.poll
    _READ = _READABLE = select.POLLIN | select.POLLPRI
    _WRITE = select.POLLOUT
    _FAILED = select.POLLHUP | select.POLLERR | select.POLLNVAL
    _PER_SECOND = 1000  # poll() takes milliseconds


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    EventLoop(listener, PollPoller()).run()
