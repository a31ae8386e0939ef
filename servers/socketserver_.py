"""`socketserver`: the standard library's ``ThreadingTCPServer``, or with ``--mixin forking``
its ``ForkingTCPServer``: the textbook answer to the lesson's second step.

A ``BaseRequestHandler`` whose ``handle`` is the threaded model's straight-line handler
(blocking ``recv_into``/``sendall``, ``time.sleep`` for SLEEP, TCP_NODELAY); what differs
from ``threaded`` is only the standard library's machinery around it: ``serve_forever``'s
selector loop (waking every ``poll_interval``), ``ThreadingMixIn`` starting a thread per
request, or ``ForkingMixIn`` forking a process per connection. The server adopts the
launcher's listening socket (``bind_and_activate=False``: no second bind or listen).

Threads are daemons (``daemon_threads``) and the server does not join them at close
(``block_on_close = False``): on SIGTERM the launcher's ``Shutdown`` leaves
``serve_forever``, every client socket is shut down, and the exit does not wait for a thread
in the middle of a WORK. Forked children serve one connection each with their own
interpreter (and GIL); each asks the kernel for SIGTERM when the server dies (as prefork's
workers do), and at the stop the server sends SIGTERM to those still running, kills any
straggler after ``STOP_GRACE`` seconds and reaps them all. ``max_children`` (40 in the
standard library, past which ``process_request`` blocks until one exits) is raised to
``MAX_CHILDREN``, so that, like the thread per client, a fork per client is limited only by
the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import socketserver
import threading
import time
from typing import Any

from servers._base import AcceptBackoff, refuse, tune
from servers.prefork import die_with_parent, reaped
from servers.threaded import THREAD_STACK, ClientSockets, handle

DESCRIPTION = "the standard library's ThreadingTCPServer (--mixin forking: ForkingTCPServer)"
MAX_CHILDREN = 4096  # forked connections at once, before process_request waits for one to end
STOP_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for children at the stop
POLL_INTERVAL = 0.5  # serve_forever's default: how often it wakes to check for shutdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixin", choices=("threading", "forking"), default="threading",
                        help="a thread or a process per connection (default: threading)")


class SessionHandler(socketserver.BaseRequestHandler):
    """One connection: the threaded model's handler on the request's socket."""

    request: socket.socket
    server: ThreadingServer | ForkingServer

    def setup(self) -> None:
        tune(self.request)
        self.server.live.add(self.request)

    def handle(self) -> None:
        handle(self.request, self.server.live)  # closes the socket and forgets it when done


class _AdoptsListener(socketserver.TCPServer):
    """A ``TCPServer`` on an already listening socket (the launcher's)."""

    def __init__(self, listener: socket.socket) -> None:
        self.address_family = listener.family
        super().__init__(listener.getsockname(), SessionHandler, bind_and_activate=False)
        self.socket.close()  # the unbound one TCPServer made: the launcher's replaces it
        self.socket = listener
        self.live = ClientSockets()  # so the stop can unblock every handler
        self.accept_backoff = AcceptBackoff()

    def get_request(self) -> tuple[socket.socket, Any]:
        """``accept``, pausing first when it fails for want of resources: the listener stays
        readable, and ``serve_forever`` would otherwise try again at once, forever."""
        try:
            request = super().get_request()
        except OSError as error:
            time.sleep(self.accept_backoff.failed(error))
            raise  # _handle_request_noblock drops it; the connection waits in the backlog
        self.accept_backoff.succeeded()
        return request


class ThreadingServer(socketserver.ThreadingMixIn, _AdoptsListener):
    """``ThreadingTCPServer``: a daemon thread per connection, none joined at close."""

    daemon_threads = True
    block_on_close = False

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # the OS will not give another thread: over capacity
            refuse(request)

    def stop(self) -> None:
        self.live.shutdown_all()


class ForkingServer(socketserver.ForkingMixIn, _AdoptsListener):
    """``ForkingTCPServer``: a child process per connection, stopped with the server."""

    max_children = MAX_CHILDREN
    block_on_close = False  # stop() reaps them, with a deadline

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener)
        self.parent = os.getpid()

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except OSError:  # fork failed (EAGAIN, ENOMEM): over capacity
            refuse(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the child: never outlive the server; leave the listening socket to it."""
        die_with_parent(self.parent)
        self.socket.close()
        super().finish_request(request, client_address)

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is left after ``STOP_GRACE``, reap them all."""
        children = set(self.active_children or ())
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while children and time.monotonic() < deadline:
            children = {pid for pid in children if not reaped(pid, os.WNOHANG)}
            time.sleep(0.01)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            reaped(pid, 0)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    if options.mixin == "forking":
        server: ThreadingServer | ForkingServer = ForkingServer(listener)
    else:
        threading.stack_size(THREAD_STACK)  # as the threaded model: 10,000 threads fit
        server = ThreadingServer(listener)
    try:
        server.serve_forever(POLL_INTERVAL)  # until the launcher's Shutdown
    finally:
        # a second stop signal must not cut the stopping short
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        server.stop()
        server.server_close()
