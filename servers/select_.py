"""`select`: one thread, one ``select.select`` call per turn over every watched socket.

The oldest portable readiness API: the whole interest set is passed in and scanned on every
call (O(n) per wake-up), and no descriptor at or above FD_SETSIZE can be watched, so
connections past that limit are turned away with ERROR 4.
"""

from __future__ import annotations

import argparse
import select
import socket

from servers._eventloop import EventLoop

DESCRIPTION = "select.select readiness loop (O(n) per wake-up, FD_SETSIZE limit)"
FD_SETSIZE = 1024  # glibc's fixed fd_set size; CPython's select() rejects fds at or above it


class SelectPoller:
    edge_triggered = False
    max_fd = FD_SETSIZE

    def __init__(self) -> None:
        self.readers: set[int] = set()
        self.writers: set[int] = set()

    def register(self, fd: int, read: bool, write: bool) -> None:
        self.modify(fd, read, write)

    def modify(self, fd: int, read: bool, write: bool) -> None:
        (self.readers.add if read else self.readers.discard)(fd)
        (self.writers.add if write else self.writers.discard)(fd)

    def unregister(self, fd: int) -> None:
        self.readers.discard(fd)
        self.writers.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
        readable, writable, _ = select.select(self.readers, self.writers, (), timeout)
        if not writable:
            return [(fd, True, False, False) for fd in readable]
        ready_to_write = set(writable)
        events = [(fd, True, fd in ready_to_write, False) for fd in readable]
        ready_to_read = set(readable)
        events += [(fd, False, True, False) for fd in writable if fd not in ready_to_read]
        return events


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    EventLoop(listener, SelectPoller()).run()
