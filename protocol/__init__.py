"""The wire and launch contract of docs/protocol.md, once, shared by servers and clients.

Nothing here does I/O on sockets (as h11 does for HTTP):

- ``protocol.codec``: the frame header, the named operation, status and error codes, the
  encoders and the incremental ``FrameDecoder``;
- ``protocol.session``: ``work``, ``respond`` and ``ServerSession``, the server side of one
  connection, which decides its lifecycle for every model.

``servers/`` and ``clients/`` import this package and never ``bench``; the harness imports it
too. The names below are the public surface: ``from protocol import ServerSession``.
"""

from __future__ import annotations

# the public surface: codec's names again, beside session's. protocol/session.py imports the
# codec names it uses from codec.py directly (this package imports session.py, so session.py
# does not import the package): the names are defined once, in codec.py
from protocol.codec import (
    FRAME_TOO_LARGE_FRAME,
    HEADER,
    HEADER_SIZE,
    MASK32,
    MAX_PAYLOAD,
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    OUTPUT_LIMIT,
    OVER_CAPACITY_FRAME,
    ErrorValue,
    Frame,
    FrameDecoder,
    Op,
    ProtocolError,
    Status,
    encode_error,
    encode_request,
    encode_response,
)
from protocol.session import Reply, ServerSession, respond, work

__all__ = [
    "FRAME_TOO_LARGE_FRAME", "HEADER", "HEADER_SIZE", "MASK32", "MAX_PAYLOAD", "MAX_SLEEP_US",
    "MAX_WORK_ITERATIONS", "OUTPUT_LIMIT", "OVER_CAPACITY_FRAME", "ErrorValue", "Frame",
    "FrameDecoder", "Op", "ProtocolError", "Reply", "ServerSession", "Status", "encode_error",
    "encode_request", "encode_response", "respond", "work",
]
