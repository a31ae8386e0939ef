"""`tornado`: a ``tornado.tcpserver.TCPServer`` whose ``handle_stream`` coroutine serves an
``IOStream``.

The way Tornado's documentation writes a TCP server: subclass ``TCPServer``, override
``handle_stream(stream, address)`` with a coroutine, ``add_sockets`` the listening sockets and
run the loop with ``asyncio.run`` (Tornado 6 runs on asyncio); the launcher's socket is the
one added. The handler reads with ``read_into(buffer, partial=True)``, straight into the
connection's own buffer (``read_bytes`` would copy each chunk twice), and writes with
``await stream.write``, which resolves once the kernel has taken it all; it reads nothing
meanwhile, so unsent output stays within what one turn of the session produces
(``OUTPUT_LIMIT``, rule 7). TCP_NODELAY is ``stream.set_nodelay(True)``; SLEEP is
``tornado.gen.sleep``.

The handler sets a close callback, which makes Tornado watch every idle stream (one not being
read) for the peer going away, and cuts a SLEEP short when it does: a client that resets
during a long SLEEP is closed, and its descriptor freed, at once. Tornado's ``IOStream`` has
no half-close, though: it closes itself both ways at the peer's end of stream, so the answers
still owed then (a SLEEP's, and those queued behind it) cannot be sent, the one conformance
rule this model cannot meet (``CONFORMANCE_XFAIL``).

Stopping is asyncio's: the launcher's handler raises ``Shutdown`` wherever the main thread is
(a long WORK included) and asyncio lets it out of the loop at once; ``asyncio.run`` then
cancels the remaining connection tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from protocol import ServerSession
from servers._base import RECV_SIZE, AcceptBackoff, not_importable

DESCRIPTION = "Tornado: TCPServer.handle_stream coroutine per IOStream (gen.sleep for SLEEP)"
FIRST_RECV = 16 * 1024  # a connection's first receive buffer; a read that fills it grows it
CONFORMANCE_XFAIL: dict[str, str] = {
    "test_half_close_still_answered":
        "Tornado's IOStream has no half-close: it closes itself at the peer's end of stream, "
        "so the answers still owed to a half-closed connection (a pending SLEEP) are lost",
}

# an optional library, imported as in servers/twisted_.py (and anyio_.py, trio_.py): the try must
# stand in each model's own module, where the names it binds are used (unavailable()'s words
# are servers/_base.py's not_importable)
try:  # optional: without it the model is listed as unavailable
    from tornado import gen
    from tornado.ioloop import IOLoop
    from tornado.iostream import IOStream, StreamClosedError
    from tornado.tcpserver import TCPServer
except ImportError as _missing:
    _WHY_MISSING: str | None = str(_missing)
else:
    _WHY_MISSING = None


def unavailable() -> str | None:
    return not_importable("tornado", _WHY_MISSING)


async def handle(stream: IOStream) -> None:
    """Serve one connection: read, answer, write, sleep through SLEEPs in order.

    Each turn answers, sends and sleeps everything through, so ``wants_input`` is
    ``may_read`` here; once it ends (end of stream, BYE, a fatal error) the session is
    finished.
    """
    loop = asyncio.get_running_loop()
    session = ServerSession()
    closed = loop.create_future()  # done once Tornado has closed the stream (the peer left)
    stream.set_close_callback(lambda: closed.done() or closed.set_result(None))
    # its own buffer: the coroutine resumes after the loop has moved on, so a buffer shared
    # with other connections could be overwritten first; small, so idle connections are
    # cheap, grown when a read fills it (bulk traffic: fewer reads)
    buffer = memoryview(bytearray(FIRST_RECV))
    stream.set_nodelay(True)
    try:
        while session.wants_input:
            try:
                count = await stream.read_into(buffer, partial=True)
            except StreamClosedError:
                session.eof_received()  # or a reset: either way wants_input is now false
                continue
            deadline = session.receive(buffer[:count], loop.time())
            while session.output or deadline is not None:
                if session.output:
                    # hand the bytearray over, detached: no copy for large answers
                    output, session.output = session.output, bytearray()
                    await stream.write(output)
                if deadline is not None:
                    await asyncio.wait((gen.sleep(deadline - loop.time()), closed),
                                       return_when=asyncio.FIRST_COMPLETED)
                    if closed.done():
                        return  # the peer went away during the SLEEP
                deadline = session.advance(loop.time())
            if count == len(buffer) < RECV_SIZE:
                buffer = memoryview(bytearray(RECV_SIZE))
    except StreamClosedError:
        pass  # reset while writing: close quietly (rule 5)
    finally:
        stream.close()


if _WHY_MISSING is None:

    class SessionServer(TCPServer):
        """Tornado's TCP server: one ``handle_stream`` coroutine per connection."""

        async def handle_stream(self, stream: IOStream, address: tuple[str, int]) -> None:
            await handle(stream)


class PausingListener:
    """The listening socket as Tornado's accept handler sees it, pausing when out of resources.

    Tornado's handler (``tornado.netutil.add_accept_handler``) lets an EMFILE out of
    ``accept`` to the loop, which reports it, and watches the still readable listener on:
    a spin that logs a traceback per wake-up. Here such an ``accept`` stops Tornado watching
    the listener for ``AcceptBackoff``'s pause, then hands it to the server again; to
    Tornado's handler it looks like an empty backlog (``BlockingIOError``). Anything else is
    the socket's own.
    """

    def __init__(self, sock: socket.socket, server: TCPServer) -> None:
        self.sock = sock
        self.server = server
        self.backoff = AcceptBackoff()

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        try:
            pair = self.sock.accept()
        except BlockingIOError:
            raise
        except OSError as error:
            pause = self.backoff.failed(error)
            if not pause:
                raise ConnectionAbortedError(str(error)) from error  # Tornado tries the next
            IOLoop.current().remove_handler(self.fileno())
            IOLoop.current().call_later(pause, self.watch)
            raise BlockingIOError(str(error)) from error
        self.backoff.succeeded()
        return pair

    def watch(self) -> None:
        """Have the server accept from this listener (again)."""
        self.server.add_sockets([self])  # type: ignore[list-item]


async def run(listener: socket.socket) -> None:
    """Serve ``listener`` until the stop signal's ``Shutdown`` ends the loop."""
    loop = asyncio.get_running_loop()
    server = SessionServer()
    # as tornado.netutil.bind_sockets would leave it: non-blocking, since Tornado accepts
    # until EAGAIN on each readiness; already listening, and add_sockets does not listen again
    listener.setblocking(False)
    PausingListener(listener, server).watch()
    try:
        await asyncio.Event().wait()
    finally:
        # the connection tasks asyncio.run cancels at the exit may report: nothing to say then
        loop.set_exception_handler(lambda loop, context: None)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    asyncio.run(run(listener))
