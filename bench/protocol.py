"""The concbench wire protocol (../shared/PROTOCOL.md, version 1), sans-IO.

No sockets here: bytes in, frames out; frames in, bytes out (as h11 does for HTTP).

- ``FrameDecoder``: feed it arbitrary chunks, take complete ``Frame``s out.
- ``encode_request`` / ``encode_response``: frames to bytes.
- ``work``: the WORK computation.
- ``respond``: one request to its response, the single source of every operation's
  semantics and every error.
- ``ServerSession``: the server side of one connection (decoding, ordered responses,
  SLEEP as a deadline, BYE and fatal errors, the 1 MiB output bound). A server model owns
  only the socket and the waiting; it feeds received bytes in, writes ``output`` out and
  calls ``advance`` again when a SLEEP deadline passes.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum
from typing import NamedTuple

HEADER = struct.Struct("!IBI")
HEADER_SIZE = HEADER.size  # 9
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_WORK_ITERATIONS = 10_000_000
MAX_SLEEP_US = 10_000_000
OUTPUT_LIMIT = 1024 * 1024  # rule 7: stop reading a connection past this much unsent output
MASK32 = 0xFFFFFFFF


class Op(IntEnum):
    """Request codes."""

    ECHO = 1
    WORK = 2
    SLEEP = 3
    BYE = 4


class Status(IntEnum):
    """Response codes."""

    OK = 0
    ERROR = 1


class ErrorValue(IntEnum):
    """The ``value`` of an ERROR response."""

    UNKNOWN_OPERATION = 1
    FRAME_TOO_LARGE = 2
    ARGUMENT_OUT_OF_RANGE = 3
    OVER_CAPACITY = 4


class ProtocolError(Exception):
    """The byte stream cannot be decoded any further (the connection cannot resync)."""


class Frame(NamedTuple):
    """One decoded frame: ``code`` is the op (request) or status (response)."""

    code: int
    value: int
    payload: bytes


class Reply(NamedTuple):
    """What to answer one request with.

    ``delay_us`` > 0 means: send ``data`` only after that many microseconds (SLEEP).
    ``close`` means: close the connection once ``data`` has been flushed (BYE).
    """

    data: bytes
    delay_us: int = 0
    close: bool = False


_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


def encode_request(op: int, value: int = 0, payload: bytes = b"") -> bytes:
    """Encode one request frame."""
    return _pack(len(payload), op, value) + payload


def encode_response(status: int, value: int = 0, payload: bytes = b"") -> bytes:
    """Encode one response frame."""
    return _pack(len(payload), status, value) + payload


def encode_error(error: ErrorValue, message: str) -> bytes:
    """Encode an ERROR response with its short UTF-8 message."""
    return encode_response(Status.ERROR, error, message.encode())


OVER_CAPACITY_FRAME = encode_error(ErrorValue.OVER_CAPACITY, "server over capacity")
FRAME_TOO_LARGE_FRAME = encode_error(ErrorValue.FRAME_TOO_LARGE, "frame too large")
_OK_EMPTY = _pack(0, Status.OK, 0)


def work(payload: bytes, iterations: int) -> int:
    """The WORK computation: a CRC32 seed stepped through a 32-bit LCG in plain Python."""
    x = zlib.crc32(payload) & MASK32
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & MASK32
    return x


def respond(op: int, value: int, payload: bytes) -> Reply:
    """Turn one request into its reply. Every model's semantics come from here."""
    if op == Op.ECHO:
        return Reply(_pack(len(payload), Status.OK, 0) + payload)
    if op == Op.WORK:
        if value > MAX_WORK_ITERATIONS:
            return Reply(encode_error(ErrorValue.ARGUMENT_OUT_OF_RANGE, "WORK n over limit"))
        return Reply(_pack(0, Status.OK, work(payload, value)))
    if op == Op.SLEEP:
        if value > MAX_SLEEP_US:
            return Reply(encode_error(ErrorValue.ARGUMENT_OUT_OF_RANGE, "SLEEP us over limit"))
        return Reply(_pack(len(payload), Status.OK, 0) + payload, delay_us=value)
    if op == Op.BYE:
        return Reply(_OK_EMPTY, close=True)
    return Reply(encode_error(ErrorValue.UNKNOWN_OPERATION, f"unknown operation {op}"))


class FrameDecoder:
    """Incremental decoder: ``feed`` chunks, iterate ``frames()`` or call ``next_frame``.

    A length over ``MAX_PAYLOAD`` raises ``ProtocolError`` as soon as its header is seen,
    before any of that payload is buffered.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None if more bytes are needed."""
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return None
        length, code, value = _unpack_from(buffer, 0)
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"frame length {length} over MAX_PAYLOAD")
        end = HEADER_SIZE + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[HEADER_SIZE:end])
        del buffer[:end]  # CPython deletes from a bytearray's front in O(1)
        return Frame(code, value, payload)

    def frames(self) -> list[Frame]:
        """Every complete frame buffered so far."""
        found = []
        while (frame := self.next_frame()) is not None:
            found.append(frame)
        return found


class ServerSession:
    """The server side of one connection, without I/O.

    The caller feeds received bytes to ``receive``, sends and then deletes what it sent
    from ``output`` (a bytearray), reads only while ``wants_read``, and when ``advance``
    (or ``receive``) returns a deadline, calls ``advance(now)`` again once the clock
    reaches it. After sending, call ``advance`` again while there is a ``backlog``: answering
    pauses when ``output`` passes ``OUTPUT_LIMIT``. ``now`` and deadlines are seconds on one
    monotonic clock of the caller's choosing. Once ``closing`` is set and ``output`` is
    empty, close the connection.

    With ``offload_from=n``, a WORK request of at least ``n`` iterations is not computed
    here: answering stops at it and ``pending_work`` holds it (reading stops, as for SLEEP).
    The caller computes ``respond(*pending_work).data`` elsewhere (a worker thread) and hands
    it to ``complete``, which resumes answering in order.
    """

    __slots__ = ("output", "closing", "deadline", "pending_work", "_offload_from", "_delayed",
                 "_input")

    def __init__(self, offload_from: int | None = None) -> None:
        self.output = bytearray()
        self.closing = False
        self.deadline: float | None = None  # when the pending SLEEP reply is due
        self.pending_work: Frame | None = None  # a WORK request parked for the caller
        self._offload_from = offload_from
        self._delayed = b""
        self._input = bytearray()

    @property
    def wants_read(self) -> bool:
        """True while the model should read this connection (rule 7, the SLEEP/WORK gate)."""
        return (not self.closing and len(self.output) < OUTPUT_LIMIT and self.deadline is None
                and self.pending_work is None)

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
        with memoryview(buffer) as view:
            while size - pos >= HEADER_SIZE and len(output) < OUTPUT_LIMIT:
                length, op, value = _unpack_from(buffer, pos)
                if length > MAX_PAYLOAD:
                    output += FRAME_TOO_LARGE_FRAME
                    self.closing = True
                    return size
                end = pos + HEADER_SIZE + length
                if end > size:
                    break
                if op == 1:  # ECHO, the hot path: no intermediate payload copy
                    output += _pack(length, 0, 0)
                    output += view[pos + HEADER_SIZE : end]
                    pos = end
                    continue
                payload = bytes(view[pos + HEADER_SIZE : end])
                pos = end
                offload_from = self._offload_from  # None unless the caller offloads WORK
                if offload_from is not None and op == Op.WORK and (
                        offload_from <= value <= MAX_WORK_ITERATIONS):
                    self.pending_work = Frame(op, value, payload)
                    break
                reply = respond(op, value, payload)
                if reply.delay_us:
                    self.deadline = now + reply.delay_us / 1e6
                    self._delayed = reply.data
                    break
                output += reply.data
                if reply.close:
                    self.closing = True
                    return size
        return pos

    def complete(self, data: bytes, now: float) -> float | None:
        """Deliver the parked WORK request's reply bytes and resume answering."""
        self.pending_work = None
        self.output += data
        return self.advance(now)
