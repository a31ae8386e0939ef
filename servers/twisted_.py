"""`twisted`: a ``Protocol`` on Twisted's epoll reactor.

The way Twisted's documentation writes a TCP server: a ``Protocol`` subclass whose
``dataReceived`` answers, built per connection by a ``Factory``, on a listening port; the
launcher has already bound and announced the socket, so ``reactor.adoptStreamPort`` listens
on it (Twisted's API for inherited sockets). SLEEP is ``reactor.callLater``. Output waits in
the transport's buffer; the protocol is the transport's streaming producer, so the transport
pauses it (``pauseProducing``) once more than its ``bufferSize`` is unsent and resumes it when
drained; paused, the protocol stops the transport reading. ``bufferSize`` is Twisted's 64 KiB:
that bounds unsent output more tightly than rule 7's 1 MiB, and it is also how much each read
asks for, so raising it to ``OUTPUT_LIMIT`` made every read a 1 MiB ``recv`` and doubled the
CPU per 64-byte ECHO (28 against 14 µs, measured). The
protocol is half-closeable (``IHalfCloseableProtocol``): after the peer's end of stream it
still answers what was asked, SLEEPs included, then closes.

Stopping: Twisted's own signal handlers stop the reactor from the loop, after the callback in
progress, so a long WORK would hold the exit up; and an exception raised in a callback or in
the main loop is logged and swallowed, never propagated. So ``serve`` runs the reactor without
them: the stop signal marks every protocol ``stopping`` (answer nothing more), asks the
reactor to stop (``callFromThread``, safe from a signal handler), and, only when it interrupts
protocol code (a WORK), raises ``Shutdown`` there to cut it short, which Twisted answers by
dropping that connection (and logs: ``log_to_stderr`` leaves that one out). Once the reactor
has stopped (its shutdown closes every connection), ``serve`` raises ``Shutdown``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from types import CodeType, FrameType
from typing import Any

from protocol import ServerSession
from servers._base import Shutdown, not_importable

DESCRIPTION = "Twisted: a Protocol per connection on the epoll reactor (callLater for SLEEP)"

# an optional library, imported as in servers/tornado_.py (and anyio_.py, trio_.py): the try must
# stand in each model's own module, where the names it binds are used (unavailable()'s words
# are servers/_base.py's not_importable)
try:  # optional: without it the model is listed as unavailable
    from twisted.internet import interfaces, protocol
    from zope.interface import implementer
except ImportError as _missing:
    _WHY_MISSING: str | None = str(_missing)
else:
    _WHY_MISSING = None


def unavailable() -> str | None:
    return not_importable("twisted", _WHY_MISSING)


def install_epoll_reactor() -> Any:
    """Install Twisted's epoll reactor (before anything imports the default one); return it."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    return reactor


if _WHY_MISSING is None:

    @implementer(interfaces.IHalfCloseableProtocol, interfaces.IPushProducer)
    class SessionProtocol(protocol.Protocol):
        """One connection: the session's answers into the transport, reading as it decides."""

        stopping = False  # set by the stop signal: answer nothing more
        reactor: Any = None  # the running reactor, set by ``serve``

        def __init__(self) -> None:
            self.session = ServerSession()
            self.timer: Any = None  # the pending SLEEP's IDelayedCall
            self.write_paused = False  # the transport holds more than its bufferSize unsent
            self.read_paused = False

        def connectionMade(self) -> None:
            transport = self.transport
            transport.setTcpNoDelay(True)
            transport.registerProducer(self, True)  # paused past bufferSize unsent (64 KiB)

        def dataReceived(self, data: bytes) -> None:
            if self.stopping:
                return
            self.session.receive(data, time.monotonic())
            self._step()

        def _step(self) -> None:
            """Hand answers to the transport; close, read and time as the session decides.

            What is written counts as sent (``loseConnection`` flushes it first); a paused
            producer is this connection's output over the limit, so reading waits for it too.
            """
            session = self.session
            transport = self.transport
            if transport is None or transport.disconnecting:
                return
            while session.output:
                # Twisted's transports take only bytes: one copy of the answers
                transport.write(bytes(session.output))  # may call pauseProducing at once
                session.output.clear()
                if self.write_paused or session.deadline is not None or not session.backlog:
                    break
                session.advance(time.monotonic())
            # output is all handed on: wants_input is may_read, and finished implies it is false
            wants_input = session.wants_input
            if not wants_input and session.finished:
                transport.unregisterProducer()  # a registered producer would hold the close
                transport.loseConnection()  # flushes what was written first
                return
            if session.deadline is not None and self.timer is None:
                delay = max(0.0, session.deadline - time.monotonic())
                self.timer = self.reactor.callLater(delay, self._timer_fired)
            # reading follows the session and the transport's back-pressure, as in
            # servers/asyncio_.py's SessionProtocol in asyncio's calls (the steps are the
            # session's contract, protocol/session.py; the calls are what differs by model)
            should_read = wants_input and not self.write_paused
            if should_read == self.read_paused:
                self.read_paused = not should_read
                (transport.resumeProducing if should_read else transport.pauseProducing)()

        # Twisted's callbacks for the steps servers/asyncio_.py's protocol takes in asyncio's
        # (timer, write pause and resume): the steps are the session's, the callbacks, clocks
        # and transports are each framework's own, so each model keeps its own
        def _advance(self) -> None:
            """Let the session's clock move on (a SLEEP may be due), then step, unless the
            server is stopping."""
            if self.stopping:
                return
            self.session.advance(time.monotonic())
            self._step()

        def _timer_fired(self) -> None:
            # Twisted's clock is the wall clock, the session's is monotonic: a timer that
            # fires a little early leaves the deadline pending, and _step sets another
            self.timer = None
            self._advance()

        # IPushProducer: the transport pauses and resumes us by its unsent bytes
        def pauseProducing(self) -> None:
            self.write_paused = True

        def resumeProducing(self) -> None:
            self.write_paused = False
            self._advance()

        def stopProducing(self) -> None:
            """The connection is going away; ``connectionLost`` follows."""

        # IHalfCloseableProtocol
        def readConnectionLost(self) -> None:
            """The peer finished sending: answer what it asked (SLEEPs included), then close."""
            self.session.eof_received()
            self._step()

        def writeConnectionLost(self) -> None:
            """Never called for TCP (Twisted's interface documentation)."""

        def connectionLost(self, reason: object = None) -> None:
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.timer = None

    # code objects of the protocol's callbacks: the stop signal raises only inside them
    _CALLBACKS: frozenset[CodeType] = frozenset(
        method.__code__ for method in (SessionProtocol.dataReceived, SessionProtocol._timer_fired,
                                       SessionProtocol.resumeProducing,
                                       SessionProtocol.readConnectionLost))


def _in_callback(frame: FrameType | None) -> bool:
    """True if ``frame`` is inside one of the protocol's callbacks (the signal interrupted it)."""
    while frame is not None:
        if frame.f_code in _CALLBACKS:
            return True
        frame = frame.f_back
    return False


def log_to_stderr() -> None:
    """Twisted's warnings and errors to stderr (stdout carries only READY), except the
    ``Shutdown`` the stop signal raises to cut a WORK short."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        PredicateResult,
        globalLogBeginner,
        textFileLogObserver,
    )

    def not_our_shutdown(event: dict[str, Any]) -> PredicateResult:
        failure = event.get("log_failure") or event.get("failure")  # new or legacy style
        if failure is not None and isinstance(failure.value, Shutdown):
            return PredicateResult.no
        return PredicateResult.maybe

    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [
        LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn), not_our_shutdown])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    log_to_stderr()
    reactor = install_epoll_reactor()
    SessionProtocol.reactor = reactor

    def stop(signum: int, frame: FrameType | None) -> None:
        SessionProtocol.stopping = True
        reactor.callFromThread(reactor.stop)
        if _in_callback(frame):
            raise Shutdown(signal.Signals(signum).name)  # cuts a WORK short

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    listener.setblocking(False)  # adoptStreamPort's requirement; it listens on a duplicate
    reactor.adoptStreamPort(listener.fileno(), listener.family,
                            protocol.Factory.forProtocol(SessionProtocol))
    reactor.run(installSignalHandlers=False)
    raise Shutdown("reactor stopped")
