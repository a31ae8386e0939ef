"""`prefork`: ``--workers N`` processes, each running the epoll model, on one port.

How Python gets past the GIL: N interpreters, each with its own GIL, share nothing but the
port. The parent (the launcher's process, which prints READY) opens N listening sockets on
the same address with SO_REUSEPORT (slot 0 is the launcher's own listener) and forks one
worker per socket. The kernel spreads incoming connections across the N accept queues by a
hash of the addresses, so no worker wakes for another's connection (no thundering herd, as
with one shared listener) and no user-space balancing is needed. A busy worker is not
relieved by an idle one, though: a connection stays in the process that accepted it, and
the hash can leave workers unevenly loaded when connections are few.

The parent keeps every socket open and only supervises. A worker that dies is reported on
standard error and restarted on the same socket, so connections waiting in its accept queue
are kept, not reset (a crash loop, more than ``RESTART_LIMIT`` deaths in
``RESTART_WINDOW`` seconds, stops the server with a non-zero exit instead). On SIGTERM or
SIGINT the parent sends SIGTERM to every worker, waits for them, kills any straggler after
``STOP_GRACE`` seconds, and reaps them all. Workers never outlive the parent: each asks the
kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and checks it has not
died already. Resource figures for this model must include the worker processes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator

from servers import epoll
from servers._base import Shutdown, add_count_option, check_count, log, make_listener, reuse_port
from servers._eventloop import EventLoop

DESCRIPTION = "--workers processes, each an epoll loop, on one SO_REUSEPORT port"
MAX_WORKERS = 256
STOP_GRACE = 1.5  # seconds between SIGTERM and SIGKILL for workers at shutdown
RESTART_LIMIT = 10  # worker deaths tolerated within RESTART_WINDOW before giving up
RESTART_WINDOW = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    epoll.add_arguments(parser)
    add_count_option(parser, "--workers", "worker processes")


def check(options: argparse.Namespace) -> None:
    check_count(options.workers, "--workers", MAX_WORKERS)


listener_options = reuse_port


def die_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent`` exits (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(sock: socket.socket, others: list[socket.socket], parent: int,
               options: argparse.Namespace) -> None:
    """The child's whole life: serve ``sock`` with the epoll loop, then ``_exit``.

    Entered with SIGTERM/SIGINT blocked (see ``spawn``); they are let through once this
    ``try`` is in place.
    """
    status = 0
    try:
        die_with_parent(parent)
        for other in others:
            other.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        EventLoop(sock, epoll.EpollPoller(options.trigger == "edge")).run()
    except Shutdown:
        pass
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stderr.flush()
        os._exit(status)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Hold SIGTERM/SIGINT back (they stay pending) for the duration."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def spawn(workers: dict[int, int], slot: int, sockets: list[socket.socket],
          options: argparse.Namespace) -> None:
    """Fork the worker for ``sockets[slot]`` and record it in ``workers`` (pid -> slot).

    Stop signals wait until the pid is recorded, so none can leave a child unrecorded (to be
    reaped by nobody) or reach the launcher's code in the child.
    """
    parent = os.getpid()
    with stop_signals_blocked():
        pid = os.fork()
        if pid == 0:
            run_worker(sockets[slot], sockets[:slot] + sockets[slot + 1:], parent, options)
        workers[pid] = slot


def describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"


def supervise(workers: dict[int, int], sockets: list[socket.socket],
              options: argparse.Namespace) -> None:
    """Wait for workers to die and restart them, until a signal or a crash loop."""
    deaths: collections.deque[float] = collections.deque()
    while True:
        pid, status = os.wait()  # a stop signal raises Shutdown out of here
        slot = workers.pop(pid, None)
        if slot is None:
            continue
        now = time.monotonic()
        deaths.append(now)
        while deaths[0] < now - RESTART_WINDOW:
            deaths.popleft()
        if len(deaths) > RESTART_LIMIT:
            log(f"prefork: worker {slot} (pid {pid}) {describe(status)}; {len(deaths)} deaths "
                f"in {RESTART_WINDOW:g} s, giving up")
            raise SystemExit(1)
        log(f"prefork: worker {slot} (pid {pid}) {describe(status)}; restarting it")
        spawn(workers, slot, sockets, options)


def stop(workers: dict[int, int]) -> None:
    """SIGTERM every worker, SIGKILL what is left after ``STOP_GRACE``, reap them all."""
    # A worker may be gone already: the same signal reached its whole process group (Ctrl-C
    # in a terminal), or it was reaped just before the stop signal interrupted the wait.
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while workers and time.monotonic() < deadline:
        for pid in list(workers):
            if reaped(pid, os.WNOHANG):
                del workers[pid]
        time.sleep(0.01)
    for pid in workers:
        log(f"prefork: worker {workers[pid]} (pid {pid}) ignored SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        reaped(pid, 0)
    workers.clear()


def reaped(pid: int, options: int) -> bool:
    """Reap child ``pid`` if it has exited; True once it is gone (reaped here or before; the
    forking socketserver model reaps its children with it too)."""
    try:
        return os.waitpid(pid, options)[0] == pid
    except ChildProcessError:
        return True


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    host, port = listener.getsockname()[:2]
    sockets = [listener]
    workers: dict[int, int] = {}  # pid -> slot
    try:
        sockets += [make_listener(host, port, reuse_port=True, joining=True)
                    for _ in range(options.workers - 1)]
        for slot in range(options.workers):
            spawn(workers, slot, sockets, options)
        supervise(workers, sockets, options)
    finally:
        # a second stop signal must not cut the reaping short
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        stop(workers)
        for sock in sockets[1:]:
            sock.close()
