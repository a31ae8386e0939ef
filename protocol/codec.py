"""The frame codec of the concbench wire protocol (docs/protocol.md, version 1), sans-IO.

No sockets here: bytes in, frames out; frames in, bytes out (as h11 does for HTTP). Every
operation, status and error code has a name here, and only here.

- ``FrameDecoder``: feed it arbitrary chunks, take complete ``Frame``s out.
- ``encode_request`` / ``encode_response`` / ``encode_error``: frames to bytes.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

HEADER = struct.Struct("!IBI")
HEADER_SIZE = HEADER.size  # 9
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_WORK_ITERATIONS = 10_000_000
MAX_SLEEP_US = 10_000_000
OUTPUT_LIMIT = 1024 * 1024  # rule 7: stop reading a connection past this much unsent output
MASK32 = 0xFFFFFFFF


# one IntEnum per code table of docs/protocol.md (Op, Status, ErrorValue): alike in shape, each
# its own values, named as the document names them
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


# its own table of docs/protocol.md, like Op and Status above: alike in shape only
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
