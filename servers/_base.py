"""What every model shares: the listening socket, the READY line, shutdown, sockets' options,
the options of a model that runs N loops, threads or processes, and an optional library."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import socket
import sys

from protocol import OVER_CAPACITY_FRAME

BACKLOG = 8192  # the kernel caps this at net.core.somaxconn
RECV_SIZE = 256 * 1024


class Shutdown(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT: stop accepting, close, exit 0.

    A ``SystemExit`` so that event loops (asyncio, uvloop) let it out of a callback instead of
    reporting and swallowing it: the signal may interrupt a long WORK inside a callback.
    """


def _raise_shutdown(signum: int, frame: object) -> None:
    raise Shutdown(signal.Signals(signum).name)


def install_shutdown_handlers() -> None:
    """Turn SIGTERM and SIGINT into ``Shutdown`` in the main thread."""
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)


def make_listener(host: str, port: int, *, reuse_port: bool = False,
                  joining: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6, by the host's form).

    ``reuse_port``: SO_REUSEPORT, so that this process's other listeners (``joining=True``)
    can bind the same port. The kernel would let any process of the same user join too, so the
    first listener of a group first binds without it: a port some other process is already
    listening on is refused with EADDRINUSE, as it is for every other model."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if reuse_port and not joining and port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # raises OSError(EADDRINUSE) when the port is taken
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(BACKLOG)
    except BaseException:
        listener.close()
        raise
    return listener


def announce(listener: socket.socket) -> None:
    """Print the launch contract's one READY line to standard output."""
    host, port = listener.getsockname()[:2]
    sys.stdout.write(f"READY {host} {port}\n")
    sys.stdout.flush()


def tune(sock: socket.socket) -> None:
    """Options every accepted connection gets: no Nagle delay on small responses."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def log(message: str) -> None:
    """Diagnostics go to standard error; standard output carries only READY."""
    print(message, file=sys.stderr, flush=True)


def refuse(sock: socket.socket) -> None:
    """Turn a connection away with one unprompted ERROR 4 frame (launch contract)."""
    try:
        sock.setblocking(False)
        sock.send(OVER_CAPACITY_FRAME)
    except OSError:
        pass
    finally:
        sock.close()


# accept's errors that mean "no resources for another connection now" (docs/protocol.md,
# "Out of resources"): the connection stays in the backlog, and the listener stays readable
ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE_FIRST = 0.005  # seconds: as Go's net/http, 5 ms doubling to 1 s
ACCEPT_PAUSE_MAX = 1.0  # so accepting resumes within about a second of descriptors coming back


class AcceptBackoff:
    """How long to stop accepting after accept fails for want of resources.

    Linux keeps reporting the listening socket readable while the connection it cannot take
    waits in the backlog, so retrying at once spins. Each model stops accepting for
    ``failed()``'s delay in its own way (an event loop stops watching the listener, a thread
    sleeps) and keeps serving the connections it holds; the delay doubles from 5 ms to 1 s
    while accepts keep failing and starts again at the first success.
    """

    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self, error: OSError) -> float:
        """The pause after ``error``: 0 for an error of that one connection (ECONNABORTED,
        EPROTO, EPERM: accept the next at once), else the next step of the backoff."""
        if error.errno not in ACCEPT_RESOURCE_ERRORS:
            return 0.0
        if self.delay == 0.0:  # one line per episode, not one per retry
            log(f"accept: {error.strerror or error}; serving the connections held, "
                "accepting again when resources come back")
        self.delay = min(ACCEPT_PAUSE_MAX, max(ACCEPT_PAUSE_FIRST, 2 * self.delay))
        return self.delay

    def succeeded(self) -> None:
        """An accept worked: the next failure starts a new episode at the shortest pause."""
        self.delay = 0.0


def add_count_option(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    """``flag N``: how many ``what`` a model runs, one per usable CPU by default."""
    cpus = len(os.sched_getaffinity(0))
    parser.add_argument(flag, type=int, default=cpus, metavar="N",
                        help=f"{what} (default: the CPUs available, {cpus})")


def check_count(value: int, flag: str, most: int) -> None:
    """Refuse a count outside 1..``most`` (SystemExit naming ``flag``)."""
    if not 1 <= value <= most:
        raise SystemExit(f"{flag} must be between 1 and {most}")


def reuse_port(options: argparse.Namespace) -> dict[str, bool]:
    """``listener_options`` of a model whose loops each listen on an SO_REUSEPORT socket."""
    return {"reuse_port": True}


def missing_library(name: str) -> str | None:
    """Why an optional library cannot be used ("pip install NAME"), or None when it imports."""
    try:
        importlib.import_module(name)
    except ImportError as error:
        return not_importable(name, str(error))
    return None


def not_importable(name: str, error: str | None) -> str | None:
    """``unavailable()``'s words for optional library ``name`` whose import failed with
    ``error`` (None: it imported), for a model that imports it at the top of its module."""
    return None if error is None else f"{name} does not import ({error}); pip install {name}"
