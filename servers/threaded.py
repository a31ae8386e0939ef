"""`threaded`: one OS thread per client, blocking sockets (the lesson's second step).

The simplest concurrent design: each thread reads, answers and writes in a straight line,
and SLEEP is a plain ``time.sleep``. The cost is a thread (stack, scheduling, GIL hand-offs)
per connection.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time

from protocol import ServerSession
from servers._base import RECV_SIZE, AcceptBackoff, refuse, tune

DESCRIPTION = "one thread per client, blocking sockets"
THREAD_STACK = 256 * 1024  # plenty for this handler; keeps 10,000 threads' address space sane
FIRST_RECV = 16 * 1024  # a connection's first receive buffer; a read that fills it grows it


class ClientSockets:
    """The live client sockets, so shutdown can unblock every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def shutdown_all(self) -> None:
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def answer(sock: socket.socket, session: ServerSession, deadline: float | None) -> None:
    """Write every answer the session has, sleeping through SLEEP deadlines in order."""
    while session.output or deadline is not None:
        if session.output:
            sock.sendall(session.output)
            session.output.clear()
        if deadline is not None:
            time.sleep(max(0.0, deadline - time.monotonic()))
        deadline = session.advance(time.monotonic())


def handle(sock: socket.socket, live: ClientSockets) -> None:
    """Serve one client until it leaves, says BYE, or breaks the framing."""
    session = ServerSession()
    # each connection owns its buffer: small ones keep 10,000 idle clients from costing 256 KiB
    # each; a read that fills it means bulk traffic, which gets RECV_SIZE (fewer recv calls)
    view = memoryview(bytearray(FIRST_RECV))
    try:
        tune(sock)
        # answer() sends and sleeps everything through, so wants_input is may_read here; once
        # it ends (end of stream, BYE, a fatal error) the session is finished
        while session.wants_input:
            count = sock.recv_into(view)
            if count == 0:
                session.eof_received()  # wants_input is now false: the loop ends
                continue
            answer(sock, session, session.receive(view[:count], time.monotonic()))
            if count == len(view) < RECV_SIZE:
                view = memoryview(bytearray(RECV_SIZE))
    except OSError:
        pass  # reset or shutdown: close quietly
    finally:
        live.discard(sock)
        sock.close()


def accept_client(listener: socket.socket) -> socket.socket:
    """Block until a client connects; out of descriptors, sleep a growing pause (the threads
    serving the held connections go on) rather than spin."""
    backoff = AcceptBackoff()  # one episode: the failures of this wait for a client
    while True:
        try:
            sock = listener.accept()[0]
        except OSError as error:  # e.g. EMFILE; the connection stays queued in the backlog
            if error.errno is None:
                raise
            time.sleep(backoff.failed(error))
            continue
        return sock


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    threading.stack_size(THREAD_STACK)
    live = ClientSockets()
    try:
        while True:
            sock = accept_client(listener)
            live.add(sock)
            try:
                threading.Thread(target=handle, args=(sock, live), daemon=True).start()
            except RuntimeError:  # the OS will not give another thread: over capacity
                live.discard(sock)
                refuse(sock)
    finally:
        live.shutdown_all()
