"""What the swarm speaks: one wire object per protocol, chosen by name (``--protocol``).

A wire gives the swarm everything protocol-specific, so that the worker has no protocol
branches: the mix parser (``parse_mix``, ``describe``, ``format_mix``), the prebuilt request
kinds (``build_kind``: the request frame and the whole expected reply as bytes, for the hot
loop's one ``bytes ==``), how long the mix asks the server to wait (``wait_us``, for the
timeout), the slowloris frame, and the reply framing of the worker's slow path: ``min_reply``
(no reply is shorter), ``reply_end`` (where the reply at a position ends, None while incomplete,
a ``ValueError`` when the stream cannot be framed) and ``classify`` (a wrong reply's error kind,
whether it is an error reply, and whether the server closes after it).

- ``concbench``: the suite's own protocol (``clients.mix.ConcbenchWire``, docs/protocol.md);
- ``resp``: the Redis protocol, PING and ECHO (``clients.resp.RespWire``).
"""

from __future__ import annotations

from typing import Protocol

from clients.mix import CONCBENCH, MixEntry
from clients.resp import RESP

DEFAULT_PROTOCOL = "concbench"


class ReplyKind(Protocol):
    """What the hot loop reads of one request kind."""

    @property
    def frame(self) -> bytes: ...  # the encoded request
    @property
    def reply_length(self) -> int: ...  # bytes of a correct reply
    @property
    def check(self) -> bytes: ...  # a correct reply starts with exactly these bytes
    @property
    def full_check(self) -> bool: ...  # ``check`` is the whole reply

    def describe(self) -> str: ...


class Wire(Protocol):
    """One protocol as the swarm speaks it."""

    @property
    def name(self) -> str: ...
    @property
    def min_reply(self) -> int: ...
    @property
    def slow_frame(self) -> bytes: ...

    def parse_mix(self, spec: str) -> list[MixEntry]: ...
    def describe(self, entry: MixEntry) -> str: ...
    def format_mix(self, entries: list[MixEntry]) -> str: ...
    def build_kind(self, entry: MixEntry, payload_seed: int = 0,
                   verify: bool = False) -> ReplyKind: ...
    def wait_us(self, entry: MixEntry) -> int: ...
    def reply_end(self, data: bytes | bytearray, pos: int, avail: int) -> int | None: ...
    def classify(self, data: bytes | bytearray, pos: int,
                 end: int) -> tuple[str, bool, bool]: ...


WIRES: dict[str, Wire] = {CONCBENCH.name: CONCBENCH, RESP.name: RESP}


def wire_for(name: str) -> Wire:
    """The wire called ``name``; ``KeyError`` naming the known ones."""
    try:
        return WIRES[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(WIRES)}") from None
