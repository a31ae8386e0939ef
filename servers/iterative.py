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

from servers.threaded import ClientSockets, accept_client, handle

DESCRIPTION = "one client at a time: accept, serve until it leaves, then the next"
CLIENTS_AT_ONCE = 1  # everyone else waits in the accept queue

_SERIAL = "one client at a time: other connections wait in the accept queue until it leaves"
# conformance test name -> why the rule cannot hold for this model (tests/conftest.py makes
# these strict expected failures)
CONFORMANCE_XFAIL: dict[str, str] = {
    "test_sleep_does_not_delay_other_connections": f"{_SERIAL}; a SLEEP holds everyone up",
    "test_sleeps_on_many_connections_overlap": f"{_SERIAL}; SLEEPs run one after another",
    "test_slow_reader_does_not_stall_others_or_grow_memory":
        f"{_SERIAL}; a client that does not read blocks the server in send",
    "test_200_concurrent_clients": f"{_SERIAL}; 199 clients wait for one that stays",
    "test_no_fd_or_thread_left_behind":
        f"{_SERIAL}; the test holds 50 connections open at once",
    "test_out_of_descriptors_keeps_serving":
        f"{_SERIAL}; of the ten connections the test holds, only the first is answered",
}


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    live = ClientSockets()  # handle() keeps this book; with one client it stays trivial
    while True:
        sock = accept_client(listener)
        live.add(sock)
        handle(sock, live)  # SIGTERM raises Shutdown out of here; handle closes the socket
