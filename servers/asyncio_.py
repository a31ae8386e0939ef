"""`asyncio`: the standard library's event loop.

``--api protocol`` (default) uses the low-level callbacks, the fast idiomatic way: a
``BufferedProtocol``, so the transport reads with ``recv_into`` into one reused buffer
(a plain ``Protocol`` gets a new ``bytes`` of up to 256 KiB per read). ``--api streams``
uses StreamReader/StreamWriter coroutines, the style most tutorials teach. SLEEP is a loop
timer (``call_at``) or ``asyncio.sleep``; output waits in the transport's buffer, and reading
pauses while it holds more than 1 MiB (rule 7).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from collections.abc import Callable
from typing import cast

from protocol import OUTPUT_LIMIT, ServerSession
from servers._accept import new_event_loop
from servers._base import BACKLOG, RECV_SIZE, Shutdown

DESCRIPTION = "asyncio event loop (--api protocol|streams)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", choices=("protocol", "streams"), default="protocol",
                        help="asyncio API style (default: protocol)")


class SessionProtocol(asyncio.BufferedProtocol):
    """One connection over Protocol/Transport callbacks."""

    # one receive buffer for the whole loop: its contents are consumed before the next read
    receive_buffer = memoryview(bytearray(RECV_SIZE))
    stopping = False  # set by the stop signal: answer nothing more

    def __init__(self) -> None:
        self.session = ServerSession()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport, hence no isinstance)
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=OUTPUT_LIMIT)  # asyncio sets TCP_NODELAY itself

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.stopping:
            return
        self.session.receive(self.receive_buffer[:nbytes], self.loop.time())
        self._step()

    def _step(self) -> None:
        """Hand answers to the transport; close, read and time as the session decides.

        What is written counts as sent (``close`` flushes it first); a paused transport is
        this model's output over the limit, so reading waits for it too.
        """
        session = self.session
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        while session.output:
            # hand the bytearray over without a copy, detached first: write() may call
            # pause_writing(), and so this method, before it returns
            data, session.output = session.output, bytearray()
            transport.write(data)
            if self.write_paused or session.deadline is not None or not session.backlog:
                break
            session.advance(self.loop.time())
        # output is all handed on: wants_input is may_read, and finished implies it is false
        wants_input = session.wants_input
        if not wants_input and session.finished:
            transport.close()  # flushes what was written first
            return
        if session.deadline is not None and self.timer is None:
            self.timer = self.loop.call_at(session.deadline, self._timer_fired)
        # reading follows the session and the transport's back-pressure; servers/twisted_.py's
        # protocol does the same in Twisted's calls (the steps are the session's contract,
        # protocol/session.py; the calls are what differs by model)
        should_read = wants_input and not self.write_paused
        if should_read == self.read_paused:
            self.read_paused = not should_read
            (transport.resume_reading if should_read else transport.pause_reading)()

    # asyncio's callbacks for the steps servers/twisted_.py's protocol takes in Twisted's
    # (timer, write pause and resume): the steps are the session's, the callbacks, clocks and
    # transports are each framework's own, so each model keeps its own
    def _timer_fired(self) -> None:
        self.timer = None
        if self.stopping:
            return
        self.session.advance(self.loop.time())
        self._step()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._step()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.session.advance(self.loop.time())
        self._step()

    def eof_received(self) -> bool:
        """The peer finished sending: answer what it asked (SLEEPs included), then close."""
        self.session.eof_received()
        self._step()
        return True  # keep the transport; _step closes it once everything is answered

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None


async def handle_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection in the tutorial style: read, answer, ``await drain()``."""
    loop = asyncio.get_running_loop()
    session = ServerSession()
    writer.transport.set_write_buffer_limits(high=OUTPUT_LIMIT)
    try:
        # each turn answers, sends and sleeps everything through, so wants_input is may_read
        # here; once it ends (end of stream, BYE, a fatal error) the session is finished.
        # servers/trio_.py's handle has the same turns in trio's calls: the turns are the
        # session's contract (protocol/session.py), the calls are what differs by model
        while session.wants_input:
            data = await reader.read(RECV_SIZE)
            if not data:
                session.eof_received()  # wants_input is now false: the loop ends
                continue
            deadline = session.receive(data, loop.time())
            while session.output or deadline is not None:
                if session.output:
                    writer.write(session.output)
                    session.output = bytearray()
                    await writer.drain()
                if deadline is not None:
                    await asyncio.sleep(deadline - loop.time())
                deadline = session.advance(loop.time())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def start(listener: socket.socket, api: str) -> asyncio.AbstractServer:
    """Start serving on ``listener`` with the chosen API style.

    Both listen on the socket again, with ``backlog`` (default 100): passing the launcher's
    keeps the accept queue as deep as every model's, so a burst of connects is not dropped
    into SYN retransmissions (a second each).
    """
    if api == "streams":
        return await asyncio.start_server(handle_stream, sock=listener, limit=RECV_SIZE,
                                          backlog=BACKLOG)
    return await asyncio.get_running_loop().create_server(SessionProtocol, sock=listener,
                                                          backlog=BACKLOG)


def run(listener: socket.socket, api: str,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = new_event_loop) -> None:
    """Serve until SIGTERM or SIGINT, then raise ``Shutdown`` (the launcher exits 0).

    The signal handler raises ``Shutdown`` wherever the main thread is, even inside a long
    WORK in a callback, so the exit takes milliseconds (``add_signal_handler`` would wait for
    the callback to finish). asyncio lets that ``SystemExit`` out of the callback; uvloop's
    read callback reports and swallows it, so the handler also stops the loop and tells every
    protocol to answer nothing more until it does.
    """
    loop = loop_factory()
    asyncio.set_event_loop(loop)

    def stop(signum: int, frame: object) -> None:
        SessionProtocol.stopping = True
        loop.set_exception_handler(lambda loop, context: None)  # the Shutdown it swallows
        loop.call_soon_threadsafe(loop.stop)  # a plain stop() is lost inside a uvloop callback
        raise Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        loop.run_until_complete(start(listener, api))
        loop.run_forever()
        raise Shutdown("loop stopped")
    finally:
        # connections still open die with the process; say nothing of their pending tasks
        loop.set_exception_handler(lambda loop, context: None)
        listener.close()


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    run(listener, options.api)
