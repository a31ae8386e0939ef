"""The server side of one connection, sans-IO: what every model answers, and when.

- ``work``: the WORK computation.
- ``respond``: one request to its ``Reply``, the single source of every operation's semantics
  and every error.
- ``ServerSession``: decoding, ordered responses, SLEEP as a deadline, BYE and fatal errors,
  the 1 MiB output bound, and the connection's lifecycle (``finished``, ``may_read``,
  ``wants_write``). A server model owns only the socket and the waiting: it feeds received
  bytes in, reports the end of stream (``eof_received``), writes ``output`` out and calls
  ``advance`` again when a SLEEP deadline passes.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

# from codec.py, not the package: protocol/__init__.py imports this module, so a name taken
# from the package here would hang on the order of its imports. protocol/__init__.py and
# tests/test_protocol.py list many of the same names because they use them too; each is
# defined once, in codec.py
from protocol.codec import (
    FRAME_TOO_LARGE_FRAME,
    HEADER,
    HEADER_SIZE,
    MASK32,
    MAX_PAYLOAD,
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    OUTPUT_LIMIT,
    ErrorValue,
    Frame,
    Op,
    Status,
    encode_error,
)

_pack = HEADER.pack
_unpack_from = HEADER.unpack_from
# the codec's names as plain ints: comparing an int with an IntEnum member looks the member
# up on its class first, several times slower on the per-request path
_ECHO = int(Op.ECHO)
_WORK = int(Op.WORK)
_SLEEP = int(Op.SLEEP)
_BYE = int(Op.BYE)
_OK = int(Status.OK)
_OK_EMPTY = _pack(0, _OK, 0)


class Reply(NamedTuple):
    """What to answer one request with.

    ``delay_us`` > 0 means: send ``data`` only after that many microseconds (SLEEP).
    ``close`` means: close the connection once ``data`` has been flushed (BYE).
    """

    data: bytes
    delay_us: int = 0
    close: bool = False


def work(payload: bytes, iterations: int) -> int:
    """The WORK computation: a CRC32 seed stepped through a 32-bit LCG in plain Python."""
    x = zlib.crc32(payload) & MASK32
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & MASK32
    return x


def respond(op: int, value: int, payload: bytes) -> Reply:
    """Turn one request into its reply. Every model's semantics come from here."""
    if op == _ECHO:
        return Reply(_pack(len(payload), _OK, 0) + payload)
    if op == _WORK:
        if value > MAX_WORK_ITERATIONS:
            return Reply(encode_error(ErrorValue.ARGUMENT_OUT_OF_RANGE, "WORK n over limit"))
        return Reply(_pack(0, _OK, work(payload, value)))
    if op == _SLEEP:
        if value > MAX_SLEEP_US:
            return Reply(encode_error(ErrorValue.ARGUMENT_OUT_OF_RANGE, "SLEEP us over limit"))
        return Reply(_pack(len(payload), _OK, 0) + payload, delay_us=value)
    if op == _BYE:
        return Reply(_OK_EMPTY, close=True)
    return Reply(encode_error(ErrorValue.UNKNOWN_OPERATION, f"unknown operation {op}"))


class ServerSession:
    """The server side of one connection, without I/O.

    The caller feeds received bytes to ``receive``, sends and then deletes what it sent
    from ``output`` (a bytearray), and when ``advance`` (or ``receive``) returns a deadline,
    calls ``advance(now)`` again once the clock reaches it. After sending, call ``advance``
    again while there is a ``backlog``: answering pauses when ``output`` passes
    ``OUTPUT_LIMIT``. ``now`` and deadlines are seconds on one monotonic clock of the
    caller's choosing.

    The connection's lifecycle is decided here, for every model; the caller asks:

    - ``may_read``: read the socket only while this is true (not after the peer's end of
      stream or BYE, nor while output is over ``OUTPUT_LIMIT``, a SLEEP is pending or WORK
      is parked: rules 1 and 7);
    - ``wants_input``: the same without the output bound, kept as a plain attribute: a caller
      that has handed all of ``output`` on before it asks (a blocking handler, asyncio's
      transport) tests this in its per-request loop, where a property call would cost more
      than the test;
    - ``wants_write``: there is output to send (wait for writability while it is true);
    - ``finished``: close the connection now. After BYE or a fatal error (``closing``): once
      ``output`` is sent. After the peer's end of stream, which the caller reports with
      ``eof_received()``: once every complete request is answered and sent, SLEEPs
      included (a partial frame is dropped, rule 5).

    A reset socket is the caller's to close at once: nothing more can be delivered.

    With ``offload_from=n``, a WORK request of at least ``n`` iterations is not computed
    here: answering stops at it and ``pending_work`` holds it (reading stops, as for SLEEP).
    The caller computes ``respond(*pending_work).data`` elsewhere (a worker thread) and hands
    it to ``complete``, which resumes answering in order.
    """

    __slots__ = ("output", "closing", "eof", "deadline", "pending_work", "wants_input",
                 "_offload_from", "_delayed", "_input")

    def __init__(self, offload_from: int | None = None) -> None:
        self.output = bytearray()
        self.closing = False  # BYE or a fatal error: answer nothing more
        self.eof = False  # the peer finished sending (``eof_received``)
        self.deadline: float | None = None  # when the pending SLEEP reply is due
        self.pending_work: Frame | None = None  # a WORK request parked for the caller
        # not closing, eof, deadline or pending_work: updated wherever one of them changes
        self.wants_input = True
        self._offload_from = offload_from
        self._delayed = b""
        self._input = bytearray()

    @property
    def may_read(self) -> bool:
        """True while the model should read this connection (rule 7, the SLEEP/WORK gate)."""
        return self.wants_input and len(self.output) < OUTPUT_LIMIT

    @property
    def wants_write(self) -> bool:
        """True while there is output to send."""
        return bool(self.output)

    @property
    def finished(self) -> bool:
        """True once nothing more will be answered or sent: close the connection."""
        if self.closing:
            return not self.output
        if not self.eof or self.output or self.deadline is not None or (
                self.pending_work is not None):
            return False
        return not self._answerable()

    def eof_received(self) -> None:
        """The peer finished sending: answer what it asked, then be ``finished``."""
        self.eof = True
        self.wants_input = False

    def _update_wants_input(self) -> None:
        self.wants_input = (not self.closing and not self.eof and self.deadline is None
                            and self.pending_work is None)

    def _answerable(self) -> bool:
        """A complete request (or an oversized header) is buffered, waiting for ``advance``.

        Only a caller whose output is held elsewhere (asyncio's paused transport) can see
        this with ``output`` empty: everyone else calls ``advance`` after each send.
        """
        buffer = self._input
        if len(buffer) < HEADER_SIZE:
            return False
        length = _unpack_from(buffer, 0)[0]
        return length > MAX_PAYLOAD or HEADER_SIZE + length <= len(buffer)

    @property
    def backlog(self) -> int:
        """Bytes received but not yet answered (call ``advance`` after sending to continue)."""
        return len(self._input)

    def receive(self, data: bytes | bytearray | memoryview, now: float) -> float | None:
        """Take received bytes, answer what can be answered; return a pending deadline."""
        busy = self.deadline is not None or self.pending_work is not None or self.closing
        if busy or self._input:
            if data:
                self._input += data
            return self.advance(now)
        # nothing buffered or pending (the usual case): answer straight from ``data`` and
        # keep only what is left unanswered, rather than copying every byte in first
        pos = self._process(data, now)
        if pos < len(data):
            self._input += memoryview(data)[pos:]
        return self.deadline

    def advance(self, now: float) -> float | None:
        """Answer buffered requests in order; return the pending SLEEP deadline, if any."""
        if self.deadline is not None:
            if now < self.deadline:
                return self.deadline
            self.output += self._delayed
            self._delayed = b""
            self.deadline = None
            self._update_wants_input()
        buffer = self._input
        if self.closing or self.pending_work is not None or not buffer:
            return None  # nothing to answer: callers may call this after every send
        pos = self._process(buffer, now)
        if pos:
            del buffer[:pos]
        return self.deadline

    def _process(self, buffer: bytes | bytearray | memoryview, now: float) -> int:
        """Answer complete frames from ``buffer``; return how many bytes were consumed."""
        output = self.output
        size = len(buffer)
        pos = 0
        echo, ok = _ECHO, _OK  # locals: the per-frame comparison costs what a literal does
        with memoryview(buffer) as view:
            while size - pos >= HEADER_SIZE and len(output) < OUTPUT_LIMIT:
                length, op, value = _unpack_from(buffer, pos)
                if length > MAX_PAYLOAD:
                    output += FRAME_TOO_LARGE_FRAME
                    self.closing = True
                    self.wants_input = False
                    return size
                end = pos + HEADER_SIZE + length
                if end > size:
                    break
                if op == echo:  # the hot path: no intermediate payload copy
                    output += _pack(length, ok, 0)
                    output += view[pos + HEADER_SIZE : end]
                    pos = end
                    continue
                payload = bytes(view[pos + HEADER_SIZE : end])
                pos = end
                offload_from = self._offload_from  # None unless the caller offloads WORK
                if offload_from is not None and op == _WORK and (
                        offload_from <= value <= MAX_WORK_ITERATIONS):
                    self.pending_work = Frame(op, value, payload)
                    self.wants_input = False
                    break
                reply = respond(op, value, payload)
                if reply.delay_us:
                    self.deadline = now + reply.delay_us / 1e6
                    self._delayed = reply.data
                    self.wants_input = False
                    break
                output += reply.data
                if reply.close:
                    self.closing = True
                    self.wants_input = False
                    return size
        return pos

    def complete(self, data: bytes, now: float) -> float | None:
        """Deliver the parked WORK request's reply bytes and resume answering."""
        self.pending_work = None
        self._update_wants_input()
        self.output += data
        return self.advance(now)
