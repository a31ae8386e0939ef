"""`asyncio-threads`: ``--threads N`` asyncio event loops in one process, one per thread, each
serving its own ``SO_REUSEPORT`` listening socket.

prefork's layout with threads instead of processes: slot 0 is the launcher's listener, the
others are bound to the same address, and the kernel spreads incoming connections over
their accept queues by a hash of the addresses, so no loop wakes for another's connection
and a connection stays on the loop that accepted it. Each loop runs the ``asyncio`` model's
``SessionProtocol`` unchanged (``servers.asyncio_``), with one receive buffer per loop rather
than the class's single one, which two loops would share. The threads share one interpreter:
under the GIL only one runs Python at a time, so this model against ``asyncio`` measures
what the GIL costs; on a free-threaded build they run in parallel, as prefork's processes do.

The main thread only supervises: it waits for the stop signal (the launcher's ``Shutdown``)
or for a loop to fail, then tells every protocol to answer nothing more, stops every loop
(``call_soon_threadsafe``), and waits up to ``STOP_GRACE`` seconds for them. The threads are
daemons: one in the middle of a long WORK cannot stop before it finishes, and the exit does
not wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time

from servers import asyncio_
from servers._base import (
    BACKLOG,
    RECV_SIZE,
    add_count_option,
    check_count,
    log,
    make_listener,
    reuse_port,
)

DESCRIPTION = "--threads asyncio loops, one per thread, each on its own SO_REUSEPORT socket"
MAX_THREADS = 256
STOP_GRACE = 0.5  # seconds the stop waits for the loops to stop before exiting anyway


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_count_option(parser, "--threads", "event loops, one per thread")


def check(options: argparse.Namespace) -> None:
    check_count(options.threads, "--threads", MAX_THREADS)


listener_options = reuse_port


class LoopProtocol(asyncio_.SessionProtocol):
    """The asyncio model's protocol with its own loop's receive buffer.

    The buffer's contents are consumed before the loop's next read, so one per loop is
    enough; the class's single buffer would be written by two threads at once.
    """

    def __init__(self, receive_buffer: memoryview) -> None:
        super().__init__()
        self.receive_buffer = receive_buffer


class LoopThread(threading.Thread):
    """One thread running one event loop that serves one listening socket."""

    def __init__(self, slot: int, sock: socket.socket, ended: threading.Event) -> None:
        super().__init__(name=f"asyncio-loop-{slot}", daemon=True)
        self.sock = sock
        self.ended = ended  # set when this loop stops, for whatever reason
        self.loop = asyncio_.new_event_loop()

    def run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        buffer = memoryview(bytearray(RECV_SIZE))
        try:
            # backlog: create_server listens again (default 100); keep the launcher's depth
            loop.run_until_complete(loop.create_server(lambda: LoopProtocol(buffer),
                                                       sock=self.sock, backlog=BACKLOG))
            loop.run_forever()
        finally:
            self.ended.set()

    def stop(self) -> None:
        """Ask the loop to stop, from another thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    host, port = listener.getsockname()[:2]
    sockets = [listener]
    threads: list[LoopThread] = []
    ended = threading.Event()
    try:
        sockets += [make_listener(host, port, reuse_port=True, joining=True)
                    for _ in range(options.threads - 1)]
        for slot, sock in enumerate(sockets):
            thread = LoopThread(slot, sock, ended)
            thread.start()
            threads.append(thread)  # once started: the stop joins only those
        ended.wait()  # until the stop signal raises Shutdown in here, or a loop fails
        failed = next(thread.name for thread in threads if not thread.is_alive())
        log(f"asyncio-threads: {failed} stopped; stopping the server")
        raise SystemExit(1)
    finally:
        LoopProtocol.stopping = True  # answer nothing more (a loop may still be mid-callback)
        for thread in threads:
            thread.stop()
        deadline = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in sockets[1:]:
            sock.close()
