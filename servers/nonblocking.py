"""`nonblocking`: the original lesson's loop, kept faithful.

Non-blocking sockets and no readiness API at all: each pass tries ``accept``, then tries
``recv`` (and any pending ``send``) on every client in turn, and when a pass found nothing to
do it sleeps ``--idle-sleep`` seconds. With a sleep, an idle server adds up to that much
latency to every request; with ``--idle-sleep 0`` it spins a core at 100 % even when idle.
"""

from __future__ import annotations

import argparse
import socket
import time

from servers._base import RECV_SIZE
from servers._eventloop import Connection

DESCRIPTION = "the lesson's polling loop: try accept and recv on everyone, sleep when idle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idle-sleep", type=float, default=0.001, metavar="SECONDS",
                        help="sleep after a pass that found nothing to do (default 0.001; 0 spins)")


def check(options: argparse.Namespace) -> None:
    if not 0 <= options.idle_sleep <= 1:
        raise SystemExit("--idle-sleep must be between 0 and 1 second")


def accept_new(listener: socket.socket, clients: list[Connection]) -> bool:
    """Try to accept one client; True if one came."""
    try:
        sock, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:  # e.g. EMFILE: leave it queued
        return False
    clients.append(Connection(sock))
    return True


def try_client(client: Connection, view: memoryview, now: float) -> bool:
    """One attempt at a client: due SLEEP replies, pending sends, one recv. True if it moved."""
    session = client.session
    moved = False
    if session.deadline is not None and now >= session.deadline:
        session.advance(now)
        moved = True
    if session.output:
        before = len(session.output)
        client.flush()
        moved = moved or len(session.output) != before
    if session.may_read:
        moved = client.read(view, now) or moved
        if session.output:
            client.flush()
    return moved


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    listener.setblocking(False)
    clients: list[Connection] = []
    view = memoryview(bytearray(RECV_SIZE))
    try:
        while True:
            busy = accept_new(listener, clients)
            now = time.monotonic()
            alive = []
            for client in clients:
                busy = try_client(client, view, now) or busy
                if client.failed or client.session.finished:
                    client.sock.close()
                else:
                    alive.append(client)
            clients = alive
            if not busy and options.idle_sleep:
                time.sleep(options.idle_sleep)
    finally:
        for client in clients:
            client.sock.close()
