"""RESP (the Redis protocol) for the swarm: prebuilt request frames, exact expected replies, and
the reply framing the worker's slow path needs, beside ``protocol``'s own codec.

What the hot loop needs is the same as for concbench's protocol (``clients.mix.Kind``): one
request frame built once, and the whole correct reply as bytes, so that checking a reply stays
one ``bytes ==`` comparison. ``ping`` sends PING (a RESP array) and expects ``+PONG``;
``echo:N`` sends ECHO with N pseudo-random bytes and expects the same bulk string back.

``reply_end`` finds where one complete reply ends in a buffer (or that more bytes are needed),
so that a worker reading partial or several replies can split them, as ``HEADER.unpack_from``
does for frames; ``classify`` names a reply that is not the expected one. ``RESP`` (a
``RespWire``) bundles them for the swarm (``python -m clients swarm --protocol resp``; the
registry is ``clients.wire``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from clients.mix import SLOWLORIS_PAYLOAD, Arguments, MixEntry, parse_entries, weighted

CRLF = b"\r\n"
MAX_BULK = 512 * 1024 * 1024  # Redis's own limit on a bulk string
MAX_LINE = 64 * 1024  # a simple string, error or length line longer than this: not RESP
SIMPLE = frozenset(b"+-:")  # simple string, error, integer: one line
BULK = ord("$")
OVER_CAPACITY = b"-ERR max number of clients reached"  # Redis answers this, then closes
OPERATIONS = {"ping": "no argument (or 0)", "echo": "payload bytes"}
ARGUMENTS: Arguments = {"ping": (0, OPERATIONS["ping"], False),
                        "echo": (MAX_BULK, OPERATIONS["echo"], True)}


class RespError(ValueError):
    """Bytes that are not RESP, or a mix the RESP swarm cannot send."""


def encode_command(*parts: bytes) -> bytes:
    """A command as clients send it: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out += [b"$%d\r\n" % len(part), part, CRLF]
    return b"".join(out)


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


@dataclass(frozen=True)
class RespKind:
    """One RESP request kind, ready for the hot loop (the fields ``clients.mix.Kind`` has)."""

    name: str
    arg: int
    frame: bytes  # the encoded request
    reply_length: int
    check: bytes  # the whole correct reply
    full_check: bool = True

    def describe(self) -> str:
        return self.name if self.name == "ping" else f"{self.name}:{self.arg}"


def build_resp_kind(op: str, arg: int, payload_seed: int = 0) -> RespKind:
    """PING -> +PONG, or ECHO of ``arg`` pseudo-random bytes -> the same bulk string."""
    if op == "ping":
        if arg:
            raise RespError("ping takes no argument")
        reply = b"+PONG\r\n"
        return RespKind("ping", 0, encode_command(b"PING"), len(reply), reply)
    if op == "echo":
        if not 0 <= arg <= MAX_BULK:
            raise RespError(f"echo:{arg}: payload bytes must be between 0 and {MAX_BULK}")
        payload = random.Random(payload_seed).randbytes(arg)
        reply = bulk(payload)
        return RespKind("echo", arg, encode_command(b"ECHO", payload), len(reply), reply)
    raise RespError(f"unknown RESP operation {op!r}; known: {', '.join(OPERATIONS)}")


def parse_resp_mix(spec: str) -> list[MixEntry]:
    """``ping,echo:64=2`` -> [MixEntry(op, arg, weight)], the mix syntax of ``clients.mix``."""
    return parse_entries(spec, ARGUMENTS, RespError, "RESP")


def reply_end(data: bytes | bytearray, pos: int, end: int) -> int | None:
    """Where the reply starting at ``pos`` ends (exclusive), or None if ``data[pos:end]`` is
    not a whole reply yet. Simple strings, errors, integers and bulk strings (what PING and
    ECHO are answered with); ``RespError`` for anything else. Nothing is copied: a large bulk
    string arriving in many reads costs one line search per read."""
    if pos >= end:
        return None
    line = data.find(CRLF, pos, end)
    if line < 0:
        if end - pos > MAX_LINE:
            raise RespError(f"no CRLF in the first {MAX_LINE} bytes of a reply")
        return None
    line_end = line + 2
    kind = data[pos]
    if kind in SIMPLE:
        return line_end
    if kind != BULK:
        raise RespError(f"unexpected RESP type byte {bytes([kind])!r}")
    try:
        length = int(data[pos + 1:line])
    except ValueError:
        raise RespError("a bulk string length that is not a number") from None
    if length == -1:
        return line_end  # the null bulk string
    if not 0 <= length <= MAX_BULK:
        raise RespError(f"bulk string length {length} out of range")
    done = line_end + length + 2
    if done > end:
        return None
    if data[done - 2:done] != CRLF:
        raise RespError("a bulk string not followed by CRLF")
    return done


def classify(reply: bytes) -> str:
    """The error kind of a complete reply that is not the expected one."""
    if reply.startswith(OVER_CAPACITY):
        return "over_capacity"
    return "error_resp" if reply.startswith(b"-") else "mismatch"


class RespWire:
    """RESP as the swarm speaks it (``clients.wire``): the mix, the prebuilt kinds, and the
    framing the worker's slow path splits replies with."""

    name = "resp"
    min_reply = 3  # "+\r\n", the shortest reply there is
    # slowloris: an ECHO declaring SLOWLORIS_PAYLOAD bytes (the swarm never sends its last one)
    slow_frame = encode_command(b"ECHO", bytes(SLOWLORIS_PAYLOAD))

    def parse_mix(self, spec: str) -> list[MixEntry]:
        return parse_resp_mix(spec)

    def describe(self, entry: MixEntry) -> str:
        return entry.op if entry.op == "ping" else f"{entry.op}:{entry.arg}"

    def format_mix(self, entries: list[MixEntry]) -> str:
        return ",".join(weighted(self.describe(entry), entry.weight) for entry in entries)

    def build_kind(self, entry: MixEntry, payload_seed: int = 0,
                   verify: bool = False) -> RespKind:
        return build_resp_kind(entry.op, entry.arg, payload_seed)

    def wait_us(self, entry: MixEntry) -> int:
        return 0  # PING and ECHO ask the server for no wait

    def reply_end(self, data: bytes | bytearray, pos: int, avail: int) -> int | None:
        return reply_end(data, pos, avail)

    def classify(self, data: bytes | bytearray, pos: int, end: int) -> tuple[str, bool, bool]:
        """A complete reply that is not the expected one: its error kind, whether it is an
        error reply, and whether the server closes the connection after it."""
        outcome = classify(bytes(data[pos:end]))
        return outcome, outcome != "mismatch", outcome == "over_capacity"


RESP = RespWire()
