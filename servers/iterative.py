"""`iterative`: one client at a time, blocking sockets (the lesson's very first step).

Accept a client, serve it with the threaded model's straight-line handler until it leaves,
then accept the next. While one client is served, every other connection waits, complete
but unanswered, in the kernel's accept queue (``listen`` backlog): nothing breaks, it only
queues. So a SLEEP, a slow reader or an idle client holds up everyone behind it; the
conformance rules that need concurrency are declared as expected failures below.
"""

from __future__ import annotations

import argparse
import socket
import time

from servers.threaded import ClientSockets, handle

DESCRIPTION = "one client at a time: accept, serve until it leaves, then the next"

_SERIAL = "one client at a time: other connections wait in the accept queue until it leaves"
# conformance test name -> why the rule cannot hold for this model (tests/conftest.py makes
# these strict expected failures)
CONFORMANCE_XFAIL: dict[str, str] = {}


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    live = ClientSockets()  # handle() keeps this book; with one client it stays trivial
    while True:
        try:
            sock, _ = listener.accept()
        except OSError as error:  # e.g. EMFILE: back off briefly rather than spin
            if error.errno is None:
                raise
            time.sleep(0.01)
            continue
        live.add(sock)
        handle(sock, live)  # SIGTERM raises Shutdown out of here; handle closes the socket
