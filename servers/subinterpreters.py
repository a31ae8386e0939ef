"""`subinterpreters`: ``--interpreters N`` isolated interpreters in one process, each running
the epoll model's loop on its own ``SO_REUSEPORT`` socket.

prefork's layout without the forks: each interpreter has its own GIL, its own modules and
its own objects (CPython 3.12's per-interpreter GIL), so N of them run Python in parallel
inside one process, sharing nothing but the port. The main interpreter opens N listening
sockets on the launcher's address (slot 0 is the launcher's own; the kernel spreads
connections over their accept queues), then runs one interpreter per socket, each in a
thread of its own: the interpreter imports ``servers`` and runs ``run_worker``, the epoll
model's ``EventLoop`` on that socket. Only integers and strings cross between interpreters:
each gets its socket as a file descriptor it owns, and the read end of a stop pipe.

It needs a CPython with a subinterpreter API: 3.14's ``concurrent.interpreters``, or 3.13's
``_interpreters`` (private, but the same machinery); the free-threaded 3.13 build from ``make
freethreaded`` has it. Elsewhere (3.11, 3.12) the model is listed as unavailable, with the
reason.

Stopping: only the main interpreter's main thread sees signals, and it only supervises. On
the launcher's ``Shutdown`` it writes to the stop pipe; every loop wakes, closes its
connections and returns, and its thread destroys its interpreter. An interpreter in the
middle of a long WORK cannot be interrupted from outside, so after ``STOP_GRACE`` seconds the
process exits anyway (``os._exit(0)``, after flushing): the kernel closes what is left, and
finalising the main interpreter with a subinterpreter still running is not allowed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path

from servers._base import Shutdown, add_count_option, check_count, log, make_listener, reuse_port

DESCRIPTION = "--interpreters isolated interpreters (own GIL each), each an epoll loop, one port"
MAX_INTERPRETERS = 64
STOP_GRACE = 0.5  # seconds the stop waits for the interpreters' loops before exiting anyway
ROOT = str(Path(__file__).resolve().parent.parent)  # what a new interpreter imports servers from

# run in each new interpreter, with fd, stop_fd and root set in its __main__
SCRIPT = """\
import sys
if root not in sys.path:
    sys.path.insert(0, root)
from servers.subinterpreters import run_worker
run_worker(fd, stop_fd)
"""


def unavailable() -> str | None:
    if _api() is None:
        return (f"CPython {platform.python_version()} has no subinterpreter API: the model needs "
                "3.14's concurrent.interpreters or 3.13's _interpreters (e.g. the free-threaded "
                "3.13 from `make freethreaded`)")
    return None


def _api() -> str | None:
    """Which subinterpreter API this CPython has: "concurrent.interpreters", "_interpreters"
    or None."""
    for name in ("concurrent.interpreters", "_interpreters"):
        with contextlib.suppress(ImportError):
            __import__(name)
            return name
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_count_option(parser, "--interpreters", "interpreters, one per thread")


def check(options: argparse.Namespace) -> None:
    check_count(options.interpreters, "--interpreters", MAX_INTERPRETERS)


listener_options = reuse_port


# --- inside each new interpreter --------------------------------------------------------------


class _Stop(Exception):
    """The stop pipe became readable: leave the loop."""


def _stop() -> None:
    raise _Stop


def run_worker(fd: int, stop_fd: int) -> None:
    """Serve the listening socket ``fd`` with the epoll loop until ``stop_fd`` is readable.

    Runs in a subinterpreter and owns both descriptors.
    """
    from servers._eventloop import EventLoop
    from servers.epoll import EpollPoller

    listener = socket.socket(fileno=fd)
    try:
        loop = EventLoop(listener, EpollPoller(edge_triggered=False))
        loop.add_reader(stop_fd, _stop)  # level-triggered: every loop sees the one byte
        with contextlib.suppress(_Stop):
            loop.run()  # closes its connections on the way out
    finally:
        listener.close()
        os.close(stop_fd)


# --- in the main interpreter ------------------------------------------------------------------


def run_interpreter(shared: dict[str, object]) -> str | None:
    """Run ``SCRIPT`` in a new isolated interpreter (its own GIL) with ``shared`` in its
    ``__main__``, then destroy it; the error it ended with, if any."""
    if _api() == "concurrent.interpreters":
        from concurrent import interpreters  # type: ignore[attr-defined]

        interp = interpreters.create()
        try:
            interp.prepare_main(shared)
            interp.exec(SCRIPT)
        except interpreters.ExecutionFailed as error:
            return str(error)
        finally:
            interp.close()
        return None
    import _interpreters  # type: ignore[import-not-found]

    interp = _interpreters.create()  # the "isolated" configuration: its own GIL
    try:
        failure = _interpreters.exec(interp, SCRIPT, shared)
    finally:
        _interpreters.destroy(interp)
    return None if failure is None else str(getattr(failure, "formatted", failure))


class InterpreterThread(threading.Thread):
    """A thread that runs one interpreter serving one listening socket."""

    def __init__(self, slot: int, fd: int, stop_fd: int, ended: threading.Event) -> None:
        super().__init__(name=f"interpreter-{slot}", daemon=True)
        self.slot = slot
        self.shared: dict[str, object] = {"fd": fd, "stop_fd": stop_fd, "root": ROOT}
        self.ended = ended  # set when this interpreter's loop returns, for whatever reason
        self.failure: str | None = None

    def run(self) -> None:
        try:
            self.failure = run_interpreter(self.shared)
        except BaseException as error:  # it could not be created or run: the server ends
            self.failure = f"{type(error).__name__}: {error}"
        finally:
            self.ended.set()


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    host, port = listener.getsockname()[:2]
    threads: list[InterpreterThread] = []
    ended = threading.Event()
    stop_read, stop_write = os.pipe()
    try:
        # slot 0 is the launcher's listener (the interpreter gets a duplicate: it closes its
        # own); the others are handed over whole
        fds = [os.dup(listener.fileno())]
        fds += [make_listener(host, port, reuse_port=True, joining=True).detach()
                for _ in range(options.interpreters - 1)]
        for slot, fd in enumerate(fds):
            thread = InterpreterThread(slot, fd, os.dup(stop_read), ended)
            thread.start()
            threads.append(thread)
        ended.wait()  # until the stop signal raises Shutdown in here, or an interpreter ends
        for thread in threads:
            if not thread.is_alive():
                log(f"subinterpreters: interpreter {thread.slot} ended: {thread.failure}")
        raise SystemExit(1)
    except Shutdown:
        stop(threads, stop_write, status=0)
        raise
    except BaseException:
        stop(threads, stop_write, status=1)
        raise
    finally:
        os.close(stop_read)
        os.close(stop_write)


def stop(threads: list[InterpreterThread], stop_write: int, status: int) -> None:
    """Wake every interpreter's loop to stop; if one is stuck in a WORK, exit now with
    ``status`` (the main interpreter cannot be finalised while another one runs)."""
    os.write(stop_write, b"x")
    deadline = time.monotonic() + STOP_GRACE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
