"""The readiness event loop shared by the select, poll and epoll models.

As in CPython's ``selectors``, a model differs only in its ``Poller``: how it registers
interest and waits. Everything else (accepting, reading with ``recv_into``, buffered writes
that wait for writability, SLEEP timers on a heap, the 1 MiB output bound) lives here once.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from protocol import ServerSession
from servers._base import BACKLOG, RECV_SIZE, AcceptBackoff, refuse, tune

ACCEPTS_PER_WAKE = 64  # bound on accepts per readiness event, so a connect storm cannot starve I/O


class Poller(Protocol):
    """The one thing a readiness model chooses: how to wait for sockets."""

    edge_triggered: bool  # True: readiness is reported once per change, so reads drain to EAGAIN
    max_fd: int | None  # file descriptors at or above this cannot be watched (select's FD_SETSIZE)

    def register(self, fd: int, read: bool, write: bool) -> None: ...
    def modify(self, fd: int, read: bool, write: bool) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
        """Wait up to ``timeout`` seconds (None: forever).

        Returns (fd, readable, writable, failed): ``failed`` is a hang-up or error condition
        (the peer is gone both ways), reported whatever the interest.
        """
        ...


class PollLikePoller:
    """The ``Poller`` of poll and epoll, which differ only in their constants (as CPython's
    ``selectors._PollLikeSelector`` serves poll, epoll and devpoll).

    The kernel object keeps the interest set: one event mask per descriptor, registered and
    modified as interest changes. A subclass names the object and its event bits.
    """

    edge_triggered = False
    max_fd: int | None = None
    _new_poll_object: Callable[[], Any]  # select.poll or select.epoll
    _READ: int  # the interest that means "tell me when it is readable"
    _READABLE: int  # the reported bits that mean readable (epoll adds the peer's half-close)
    _WRITE: int
    _FAILED: int  # hang-up and error, reported whatever the interest
    _PER_SECOND: int  # the poll object's timeout unit: 1000 (milliseconds) or 1 (seconds)

    def __init__(self) -> None:
        self._poll_object = self._new_poll_object()
        self.poll = self._bound_poll()  # shadows the method: its constants bound once

    def _mask(self, read: bool, write: bool) -> int:
        return (self._READ if read else 0) | (self._WRITE if write else 0)

    def register(self, fd: int, read: bool, write: bool) -> None:
        self._poll_object.register(fd, self._mask(read, write))

    def modify(self, fd: int, read: bool, write: bool) -> None:
        self._poll_object.modify(fd, self._mask(read, write))

    def unregister(self, fd: int) -> None:
        self._poll_object.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
        return self._bound_poll()(timeout)  # replaced per instance in __init__

    def _bound_poll(self) -> Callable[[float | None], list[tuple[int, bool, bool, bool]]]:
        """``poll`` with the object's method and the subclass's constants in closure cells:
        it runs once per wake-up, where each attribute lookup on ``self`` shows in the
        instructions per request at one connection (measured: +1.3 % epoll, +2.6 % poll)."""
        wait = self._poll_object.poll
        readable, writable, failed = self._READABLE, self._WRITE, self._FAILED
        per_second = self._PER_SECOND

        def poll(timeout: float | None) -> list[tuple[int, bool, bool, bool]]:
            # None waits forever for both; poll rounds a fraction of a millisecond up, so a
            # timer is never waited for too briefly (which would spin until it is due)
            events = wait(None if timeout is None else timeout * per_second)
            return [(fd, bool(mask & readable), bool(mask & writable), bool(mask & failed))
                    for fd, mask in events]

        return poll


class Connection:
    """One client socket and its protocol session, for non-blocking models.

    The session decides when to read, write and close (``may_read``, ``wants_write``,
    ``finished``); the connection adds only what the socket reports: ``failed``.
    """

    __slots__ = ("sock", "fd", "session", "failed", "drained", "interest", "timer_due",
                 "offloaded")

    def __init__(self, sock: socket.socket, session: ServerSession | None = None) -> None:
        sock.setblocking(False)
        tune(sock)
        self.sock = sock
        self.fd = sock.fileno()
        self.session = ServerSession() if session is None else session
        self.failed = False  # reset or hang-up: close at once, nothing more can be delivered
        self.drained = False  # the last recv found nothing more to read
        self.interest = (True, False)  # (read, write) as registered with the poller
        self.timer_due: float | None = None
        self.offloaded = False  # its session's pending WORK was handed to EventLoop.offload

    def read(self, view: memoryview, now: float) -> bool:
        """One ``recv_into``; feed what came to the session. False when nothing was read."""
        try:
            count = self.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            self.drained = True
            return False
        except OSError:  # reset: close quietly (rule 5)
            self.failed = True
            return False
        if count == 0:
            self.session.eof_received()
            return False
        self.session.receive(view[:count], now)
        return True

    def flush(self) -> None:
        """Send as much buffered output as the socket takes; then answer any backlog."""
        session = self.session
        while session.output:
            try:
                sent = self.sock.send(session.output)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.failed = True
                return
            del session.output[:sent]
            if session.backlog and session.deadline is None:
                session.advance(time.monotonic())


class EventLoop:
    """Accept, read, answer, write and fire SLEEP timers, waiting with a ``Poller``.

    Hooks for a model that computes WORK elsewhere (the reactor): ``new_session`` makes each
    connection's session (e.g. one that parks WORK in ``pending_work``); ``offload`` is called
    once per parked request; the model then hands the reply to ``complete`` from the loop's
    thread, woken through a descriptor it watches with ``add_reader``.
    """

    def __init__(self, listener: socket.socket, poller: Poller, *,
                 new_session: Callable[[], ServerSession] = ServerSession,
                 offload: Callable[[Connection], None] | None = None) -> None:
        self.listener = listener
        self.poller = poller
        self.new_session = new_session
        self.offload = offload
        self.readers: dict[int, Callable[[], None]] = {}  # extra descriptors: fd -> on readable
        self.connections: dict[int, Connection] = {}
        self.timers: list[tuple[float, int, Connection]] = []
        self._sequence = itertools.count()
        self._buffer = memoryview(bytearray(RECV_SIZE))
        self.accept_backoff = AcceptBackoff()
        self.listening_again_at: float | None = None  # listener unwatched until then (no fds)

    def run(self) -> None:
        listener = self.listener
        listener.setblocking(False)
        listen_fd = listener.fileno()
        self.poller.register(listen_fd, True, False)
        try:
            while True:
                for fd, readable, writable, failed in self.poller.poll(self._timeout()):
                    if fd == listen_fd:
                        self._accept()
                    elif (connection := self.connections.get(fd)) is not None:
                        if failed:
                            self._close(connection)
                        else:
                            self._service(connection, readable, writable)
                    elif (callback := self.readers.get(fd)) is not None:
                        callback()
                if self.timers:
                    self._fire_timers()
                if (self.listening_again_at is not None
                        and time.monotonic() >= self.listening_again_at):
                    self.listening_again_at = None
                    self.poller.register(listen_fd, True, False)
        finally:
            self.close_all()

    def _timeout(self) -> float | None:
        due = self.timers[0][0] if self.timers else None
        if self.listening_again_at is not None:
            due = self.listening_again_at if due is None else min(due, self.listening_again_at)
        return None if due is None else max(0.0, due - time.monotonic())

    def _accept(self) -> None:
        max_fd = self.poller.max_fd
        # edge-triggered readiness is not reported again for connections left in the backlog
        for _ in range(BACKLOG if self.poller.edge_triggered else ACCEPTS_PER_WAKE):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # e.g. EMFILE: the connection waits in the backlog, and the listener stays
                # readable; stop watching it for a while rather than spin on it
                pause = self.accept_backoff.failed(error)
                if not pause:
                    continue
                self.poller.unregister(self.listener.fileno())
                self.listening_again_at = time.monotonic() + pause
                return
            self.accept_backoff.succeeded()
            if max_fd is not None and sock.fileno() >= max_fd:
                refuse(sock)
                continue
            connection = Connection(sock, self.new_session())
            self.connections[connection.fd] = connection
            self.poller.register(connection.fd, True, False)

    def _service(self, connection: Connection, readable: bool, writable: bool) -> None:
        now = time.monotonic()
        if readable:
            connection.drained = False
            self._read(connection, now)
        if writable or connection.session.output:
            connection.flush()
            if self.poller.edge_triggered and not connection.drained:
                self._read(connection, time.monotonic())  # output drained: reads may resume
        self._settle(connection)

    def _read(self, connection: Connection, now: float) -> None:
        """Read once (level-triggered) or until EAGAIN (edge-triggered), while wanted."""
        drain = self.poller.edge_triggered
        session = connection.session
        view = self._buffer
        while session.may_read:
            if not connection.read(view, now):
                break
            if session.output:
                connection.flush()
            if not drain:
                break

    def _settle(self, connection: Connection) -> None:
        """Close a finished connection, or bring its timer and poller interest up to date."""
        session = connection.session
        may_read = session.may_read
        # finished implies not may_read: the usual case asks the session one question
        if connection.failed or (not may_read and session.finished):
            self._close(connection)
            return
        deadline = session.deadline
        if deadline is not None and connection.timer_due != deadline:
            connection.timer_due = deadline
            heapq.heappush(self.timers, (deadline, next(self._sequence), connection))
        if (self.offload is not None and session.pending_work is not None
                and not connection.offloaded):
            connection.offloaded = True
            self.offload(connection)
        if self.poller.edge_triggered:
            return  # registered once for both directions
        wants = (may_read, session.wants_write)
        if wants != connection.interest:
            connection.interest = wants
            self.poller.modify(connection.fd, *wants)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        timers = self.timers
        while timers and timers[0][0] <= now:
            deadline, _, connection = heapq.heappop(timers)
            if connection.timer_due != deadline or connection.fd not in self.connections:
                continue  # stale: the connection closed or moved on
            connection.timer_due = None
            connection.session.advance(now)
            self._resume(connection, now)

    def _resume(self, connection: Connection, now: float) -> None:
        """Send what the session answered outside I/O (a timer, a completion), read on, settle."""
        connection.flush()
        if self.poller.edge_triggered and not connection.drained:
            self._read(connection, now)
        self._settle(connection)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch one more descriptor; call ``callback`` when it is readable.

        Edge-triggered pollers report it once per change: the callback must drain it.
        """
        self.readers[fd] = callback
        self.poller.register(fd, True, False)

    def complete(self, connection: Connection, reply: bytes) -> None:
        """Deliver an offloaded WORK request's reply (in the loop's thread) and carry on."""
        if self.connections.get(connection.fd) is not connection:
            return  # it closed meanwhile (and its descriptor may already be reused)
        connection.offloaded = False
        now = time.monotonic()
        connection.session.complete(reply, now)
        self._resume(connection, now)

    def _close(self, connection: Connection) -> None:
        del self.connections[connection.fd]
        self.poller.unregister(connection.fd)
        connection.timer_due = None
        connection.sock.close()

    def close_all(self) -> None:
        for connection in list(self.connections.values()):
            self._close(connection)
        self.timers.clear()
