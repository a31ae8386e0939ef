"""`reactor`: half-sync/half-async: one epoll I/O loop plus a pool of threads for WORK.

The loop is the epoll model's (``servers._eventloop``): it does all the I/O, framing, ECHO,
SLEEP timers and BYE. A WORK request of at least ``--offload-from`` iterations is parked by
its connection's session (``ServerSession(offload_from=...)``) and handed to one of
``--threads`` worker threads, which computes ``respond(...)`` and queues the reply; an
eventfd wakes the loop, which hands the reply back to the session, and answering resumes
where it stopped, so responses still go out in request order (rule 1). While its WORK is
out, that connection is not read (as during a SLEEP), which keeps its memory bounded; the
other connections carry on. Smaller WORK is computed inline, where a hand-off would cost
more than the work.

What the GIL does to this on CPython: WORK is pure Python, and only one thread runs Python
at a time. Offloading therefore adds no CPU for WORK: total WORK throughput stays one core,
now time-sliced between the workers and the loop. What it buys is fairness: the loop gets
the GIL back at least every switch interval (``sys.getswitchinterval()``, 5 ms by default),
so a long WORK adds milliseconds to everyone else's ECHO rather than its whole duration.
The price is a hand-off per WORK (queue, thread wake-up, eventfd, GIL handovers) and ECHO
latency that now includes waits for the GIL: each send, recv and poll of the loop releases
the GIL, and while a worker computes, getting it back can take a whole switch interval (the
convoy effect). Every extra worker is one more contender for the GIL the loop needs, so under
the GIL the default is one worker (measured on this shared 2-core machine, 50 connections,
1% WORK of 100,000 iterations: ECHO p50 0.1-0.4 ms with one worker, 5-7 ms with two, for
the same throughput). On a free-threaded build the workers truly run in parallel with each
other and with the loop, and the default is one per CPU.

The workers are daemon threads, not a ``concurrent.futures`` executor, whose threads the
interpreter joins at exit: one 10,000,000-iteration WORK in progress would otherwise hold a
SIGTERM past the two-second exit of the launch contract.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import queue
import socket
import sys
import threading
import time

from protocol import MAX_WORK_ITERATIONS, Frame, ServerSession, respond
from servers import epoll
from servers._eventloop import Connection, EventLoop

DESCRIPTION = "epoll I/O loop + --threads worker pool for WORK (half-sync/half-async)"
# iterations: about 70 us of Python here; a hand-off adds 20-50 us to a round trip (measured)
DEFAULT_OFFLOAD_FROM = 1000
MAX_THREADS = 1024
JOIN_BUDGET = 0.2  # seconds shutdown waits for idle workers to leave


def default_threads() -> int:
    """One worker under the GIL (more only contend with the loop); else one per CPU."""
    gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()  # Python 3.13+
    return 1 if gil_enabled else len(os.sched_getaffinity(0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    epoll.add_arguments(parser)
    parser.add_argument("--threads", type=int, default=default_threads(), metavar="N",
                        help="worker threads for WORK (default: 1 under the GIL, else one "
                             f"per CPU; here {default_threads()})")
    parser.add_argument("--offload-from", type=int, default=DEFAULT_OFFLOAD_FROM, metavar="N",
                        help="hand WORK of at least N iterations to the workers; smaller WORK "
                             f"runs on the loop (default {DEFAULT_OFFLOAD_FROM}; 0: all WORK)")


def check(options: argparse.Namespace) -> None:
    if not 1 <= options.threads <= MAX_THREADS:
        raise SystemExit(f"--threads must be between 1 and {MAX_THREADS}")
    if not 0 <= options.offload_from <= MAX_WORK_ITERATIONS:
        raise SystemExit(f"--offload-from must be between 0 and {MAX_WORK_ITERATIONS}")


class WorkerPool:
    """Threads that compute parked WORK requests; replies come back through an eventfd."""

    def __init__(self, threads: int) -> None:
        self.jobs: queue.SimpleQueue[tuple[Connection, Frame] | None] = queue.SimpleQueue()
        self.done: collections.deque[tuple[Connection, bytes]] = collections.deque()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"reactor-{index}")
                        for index in range(threads)]
        for thread in self.threads:
            thread.start()

    def submit(self, connection: Connection) -> None:
        """Queue a connection's parked WORK request (called in the loop's thread)."""
        frame = connection.session.pending_work
        assert frame is not None
        self.jobs.put((connection, frame))

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            connection, frame = job
            self.done.append((connection, respond(*frame).data))
            os.eventfd_write(self.wake_fd, 1)

    def completed(self) -> list[tuple[Connection, bytes]]:
        """Take every finished reply (called in the loop's thread when ``wake_fd`` is readable).

        The counter is reset before the queue is emptied, so a reply queued after that
        wakes the loop again.
        """
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.wake_fd)
        done = self.done
        return [done.popleft() for _ in range(len(done))]

    def close(self) -> None:
        """Drop queued jobs, stop the workers; close the eventfd once none can write to it."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.jobs.get_nowait()
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + JOIN_BUDGET
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(thread.is_alive() for thread in self.threads):
            os.close(self.wake_fd)  # else a worker is mid-WORK: the process exit closes it


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    pool = WorkerPool(options.threads)
    offload_from = options.offload_from
    loop = EventLoop(listener, epoll.EpollPoller(options.trigger == "edge"),
                     new_session=lambda: ServerSession(offload_from), offload=pool.submit)

    def deliver() -> None:
        for connection, reply in pool.completed():
            loop.complete(connection, reply)

    loop.add_reader(pool.wake_fd, deliver)
    try:
        loop.run()
    finally:
        pool.close()
