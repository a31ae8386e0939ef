"""`anyio`: one task per connection on anyio's TCP listener, over asyncio or trio.

The way anyio's documentation writes a TCP server: ``listener.serve(handler)``, whose handler
reads with ``receive`` and writes with ``send`` in a straight line inside ``async with
client``. ``anyio.create_tcp_listener`` would bind a socket of its own; the launcher has
already bound and announced one, so ``SocketListener.from_socket`` wraps that instead (the
same listener class). anyio sets TCP_NODELAY on every accepted socket, on both backends.
SLEEP is ``anyio.sleep_until`` on the backend's clock. ``send`` returns once the kernel has
taken everything (on asyncio anyio sets the transport's write buffer limit to 0 and waits
for it to drain), and the handler reads nothing meanwhile (on asyncio anyio pauses the
transport's reading outside ``receive``), so unsent output stays within what one turn of the
session produces (``OUTPUT_LIMIT``, rule 7).

``--backend asyncio`` (default) stops as the asyncio model does: the signal handler raises
``Shutdown`` wherever the main thread is (a long WORK included), asyncio lets it out of the
loop at once, and the runner then cancels every task, quietly. ``--backend trio`` stops as
the trio model does (``servers.trio_``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from types import FrameType
from typing import Any

from protocol import ServerSession
from servers import trio_
from servers._base import RECV_SIZE, Shutdown

DESCRIPTION = "anyio: one task per connection on its TCP listener (--backend asyncio|trio)"

try:  # optional: without it the model is listed as unavailable
    import anyio
    import anyio.abc
except ImportError as _missing:
    anyio = None  # type: ignore[assignment]
    _WHY_MISSING = str(_missing)


def unavailable() -> str | None:
    if anyio is None:
        return f"anyio does not import ({_WHY_MISSING}); pip install anyio"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio",
                        help="anyio's event loop backend (default: asyncio)")


def check(options: argparse.Namespace) -> None:
    if options.backend == "trio" and trio_.unavailable() is not None:
        raise SystemExit(f"--backend trio: {trio_.unavailable()}")


async def handle(client: anyio.abc.SocketStream) -> None:
    """Serve one connection: read, answer, ``send``, sleep through SLEEPs in order.

    Each turn answers, sends and sleeps everything through, so ``wants_input`` is
    ``may_read`` here; once it ends (end of stream, BYE, a fatal error) the session is
    finished, and ``async with`` closes the stream.
    """
    session = ServerSession()
    async with client:
        try:
            while session.wants_input:
                try:
                    data = await client.receive(RECV_SIZE)
                except anyio.EndOfStream:
                    session.eof_received()  # wants_input is now false: the loop ends
                    continue
                if trio_.stopping:  # the trio backend's stop signal (see servers.trio_)
                    return
                deadline = session.receive(data, anyio.current_time())
                while session.output or deadline is not None:
                    if session.output:
                        # the bytearray handed over, detached: no copy (both backends take
                        # any bytes-like object)
                        output, session.output = session.output, bytearray()
                        await client.send(output)  # type: ignore[arg-type]
                    if deadline is not None:
                        await anyio.sleep_until(deadline)
                    if trio_.stopping:
                        return
                    deadline = session.advance(anyio.current_time())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # reset: close quietly (rule 5); an escaping error would end the server


def quiet_stop_on_signals(loop: asyncio.AbstractEventLoop) -> None:
    """On asyncio: SIGTERM and SIGINT raise ``Shutdown`` and silence the loop's reports of it
    (the runner cancels every task after it escapes, and reports the main task's group)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        loop.set_exception_handler(lambda loop, context: None)
        raise Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


async def serve_socket(listener: socket.socket, backend: str) -> None:
    """Serve the launcher's listening socket (anyio takes it over) until stopped."""
    if backend == "trio":
        trio_.take_over_signals()
    else:
        quiet_stop_on_signals(asyncio.get_running_loop())
    async with await anyio.abc.SocketListener.from_socket(listener) as wrapped:
        await wrapped.serve(handle)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    backend: str = options.backend

    def main() -> Any:
        return serve_socket(listener, backend)

    if backend == "trio":
        trio_.run(main, lambda fn: anyio.run(fn, backend="trio"))
    else:
        anyio.run(main, backend="asyncio")
