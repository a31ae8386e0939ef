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
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from protocol import ServerSession
from servers import trio_
from servers._base import RECV_SIZE, AcceptBackoff, Shutdown, not_importable

DESCRIPTION = "anyio: one task per connection on its TCP listener (--backend asyncio|trio)"

try:  # optional: without it the model is listed as unavailable
    import anyio
    import anyio.abc
except ImportError as _missing:
    anyio = None  # type: ignore[assignment]
    _WHY_MISSING: str | None = str(_missing)
else:
    _WHY_MISSING = None


def unavailable() -> str | None:
    return not_importable("anyio", _WHY_MISSING)


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
    reads_only_when_asked(client)
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


def reads_only_when_asked(client: anyio.abc.SocketStream) -> None:
    """On asyncio: stop the transport reading until the handler's first ``receive``.

    anyio's asyncio stream reads only inside ``receive``: it resumes the transport's reading
    there, and pauses it once data came. But the transport of an accepted socket starts out
    reading, and ``receive`` resumes and pauses only when nothing is queued yet: a client
    whose data is there before the first ``receive`` (one that pipelines from its connect)
    keeps the transport reading for good, and anyio queues whatever it sends, unbounded,
    while ``send`` waits for a client that does not read. Pausing here closes that race.
    The transport is anyio's private attribute; without it (trio, which reads only when
    asked) there is nothing to pause.
    """
    transport = getattr(client, "_transport", None)
    if transport is not None:
        transport.pause_reading()


async def accept_forever(listener: anyio.abc.SocketListener,
                         handler: Callable[[anyio.abc.SocketStream], Awaitable[None]]) -> None:
    """``listener.serve(handler)`` that outlives a want of descriptors.

    anyio's ``serve`` lets accept's error out of its task group, which ends the server; here
    an accept that fails for want of resources sleeps ``AcceptBackoff``'s pause (the
    connections' tasks go on) and tries again.
    """
    backoff = AcceptBackoff()
    async with anyio.create_task_group() as tasks:
        while True:
            try:
                client = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as error:
                # the trio backend wraps accept's OSError in BrokenResourceError
                cause = error if isinstance(error, OSError) else error.__cause__
                if not isinstance(cause, OSError):
                    raise
                await anyio.sleep(backoff.failed(cause))
                continue
            backoff.succeeded()
            tasks.start_soon(handler, client)


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
        await accept_forever(wrapped, handle)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    backend: str = options.backend

    def main() -> Any:
        return serve_socket(listener, backend)

    if backend == "trio":
        trio_.run(main, lambda fn: anyio.run(fn, backend="trio"))
    else:
        anyio.run(main, backend="asyncio")
