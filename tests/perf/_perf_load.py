"""A fixed amount of work for pytest-benchmark: exactly N ECHO round trips over C connections.

pytest-benchmark times a function, so a round must be a fixed amount of work (not a fixed
duration, as the swarm's runs are): ``closed_loop`` keeps one request in flight on each of C
connections until N replies have come back, checks every reply, and records each round trip's
latency. The client runs in the test process, pinned away from the server's core; it is lean
(epoll, prebuilt frames, ``recv_into`` one buffer) but it is Python, so for the fastest models
its own cost is part of the time: these figures are for trends on one machine, while the
regression gate is ``python -m bench regress`` (the swarm, head against base).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psutil
from hdrh.histogram import HdrHistogram

from protocol import Op, Status, encode_request, encode_response

RECV_SIZE = 64 * 1024


@dataclass
class LoadResult:
    """One fixed-work round: how long it took and every round trip's latency (ns)."""

    requests: int
    seconds: float
    latencies_ns: array

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def closed_loop(address: tuple[str, int], connections: int, requests: int, payload: int = 64,
                timeout_s: float = 60.0) -> LoadResult:
    """Exactly ``requests`` ECHO round trips, one in flight per connection; raises on a wrong
    reply, a closed connection or when ``timeout_s`` passes."""
    request = encode_request(Op.ECHO, 0, b"x" * payload)
    expected = encode_response(Status.OK, 0, b"x" * payload)
    size = len(expected)
    socks = [socket.create_connection(address, timeout=timeout_s) for _ in range(connections)]
    poller = select.epoll()
    buffer = bytearray(RECV_SIZE)
    view = memoryview(buffer)
    latencies = array("q")
    got: dict[int, bytearray] = {}
    sent_at: dict[int, int] = {}
    by_fd: dict[int, socket.socket] = {}
    issued = done = 0
    deadline = time.monotonic() + timeout_s
    try:
        start = time.perf_counter()
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            fd = sock.fileno()
            by_fd[fd], got[fd] = sock, bytearray()
            poller.register(fd, select.EPOLLIN)
            if issued < requests:
                sent_at[fd] = time.perf_counter_ns()
                sock.send(request)
                issued += 1
        while done < requests:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {requests} replies within {timeout_s} s")
            events = poller.poll(1.0)
            now = time.perf_counter_ns()
            for fd, _mask in events:
                count = by_fd[fd].recv_into(view)
                if count == 0:
                    raise ConnectionError("the server closed a connection")
                pending = got[fd]
                pending += view[:count]
                if len(pending) < size:
                    continue
                if len(pending) > size or pending != expected:
                    raise AssertionError(f"wrong reply: {bytes(pending[:32])!r}")
                pending.clear()
                latencies.append(now - sent_at[fd])
                done += 1
                if issued < requests:
                    sent_at[fd] = now
                    by_fd[fd].send(request)
                    issued += 1
        seconds = time.perf_counter() - start
    finally:
        poller.close()
        for sock in socks:
            sock.close()
    return LoadResult(requests, seconds, latencies)


def histogram(rounds: Sequence[LoadResult]) -> HdrHistogram:
    """Every round trip of every round, in microseconds."""
    merged = HdrHistogram(1, 60_000_000, 3)
    for result in rounds:
        values, counts = np.unique(np.frombuffer(result.latencies_ns, dtype=np.int64) // 1000,
                                   return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            merged.record_value(max(1, value), count)
    return merged


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(server CPUs, client CPUs): the first CPU for the server, the rest for the client."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process and its descendants (new threads inherit it)."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            for thread in process.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, cpus)


@contextlib.contextmanager
def split_placement(server_pid: int) -> Iterator[None]:
    """Server tree on one core, this process on the others, for the duration; then restore."""
    split = split_cpus()
    if split is None:
        yield
        return
    mine = os.sched_getaffinity(0)
    pin_tree(server_pid, split[0])
    os.sched_setaffinity(0, split[1])
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)
