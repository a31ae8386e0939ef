"""Request mixes: ``op:arg=weight,...`` parsed into prebuilt request frames and expected replies.

``arg`` is payload bytes for ``echo``, iterations for ``work`` and microseconds for ``sleep``;
``=weight`` is optional (default 1). ``echo:64`` is the default mix.

Every ``Kind`` carries what the swarm's hot loop needs to check a reply with one
``bytearray.startswith`` call: the reply's total length and the bytes it must begin with
(the whole reply for ECHO and SLEEP, and for WORK under ``--verify``; the length and OK status
otherwise).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from protocol import (
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    ErrorValue,
    Op,
    Status,
    encode_request,
    encode_response,
    work,
)

DEFAULT_MIX = "echo:64"
SEQUENCE_LENGTH = 4096  # requests drawn per connection for a weighted mix, then cycled
# slowloris: the payload a slow connection's frame declares (at a byte every few seconds it would
# take hours to finish, and the swarm never sends its last byte)
SLOWLORIS_PAYLOAD = 4096

# op name -> (op code, limit on arg, what arg means)
OPERATIONS: dict[str, tuple[Op, int, str]] = {
    "echo": (Op.ECHO, MAX_PAYLOAD, "payload bytes"),
    "work": (Op.WORK, MAX_WORK_ITERATIONS, "iterations"),
    "sleep": (Op.SLEEP, MAX_SLEEP_US, "microseconds"),
}


class MixError(ValueError):
    """A mix specification that cannot be used; the message says why."""


@dataclass(frozen=True)
class MixEntry:
    """One weighted operation of a mix."""

    op: str
    arg: int
    weight: float

    def __str__(self) -> str:
        return weighted(f"{self.op}:{self.arg}", self.weight)


def weighted(label: str, weight: float) -> str:
    """A mix entry as written: its label, then ``=weight`` unless the weight is 1."""
    text = f"{weight:g}"
    return label if text == "1" else f"{label}={text}"


# what a protocol's mix operations take: name -> (largest argument, what it means, whether one
# must be given); the mix syntax itself (``op:arg=weight,...``) is parsed once, below
Arguments = dict[str, tuple[int, str, bool]]
CONCBENCH_ARGUMENTS: Arguments = {name: (limit, meaning, True)
                                  for name, (_, limit, meaning) in OPERATIONS.items()}


def parse_mix(spec: str) -> list[MixEntry]:
    """Parse ``op:arg=weight,...``; raise ``MixError`` with a clear message if it is wrong."""
    return parse_entries(spec, CONCBENCH_ARGUMENTS, MixError)


def parse_entries(spec: str, arguments: Arguments, error: type[ValueError],
                  protocol: str = "") -> list[MixEntry]:
    """The mix syntax for any protocol's operations (``arguments``); ``error`` (a ValueError)
    says what is wrong, ``protocol`` names the protocol in the unknown-operation message."""
    entries = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise error(f"empty entry in mix {spec!r}")
        operation, _, weight_text = item.partition("=")
        name, colon, arg_text = operation.partition(":")
        name = name.strip().lower()
        if name not in arguments:
            raise error(f"unknown {protocol + ' ' if protocol else ''}operation {name!r} in "
                        f"{item!r}; known: {', '.join(arguments)}")
        limit, meaning, required = arguments[name]
        if required and (not colon or not arg_text.strip()):
            raise error(f"{item!r}: give the {meaning} as {name}:N")
        arg = _parse_arg(item, name, arg_text, limit, meaning, error) if arg_text.strip() else 0
        entries.append(MixEntry(name, arg, _parse_weight(item, weight_text, error)))
    return entries


def _parse_arg(item: str, name: str, text: str, limit: int, meaning: str,
               error: type[ValueError]) -> int:
    try:
        arg = int(text.strip())
    except ValueError:
        raise error(f"{item!r}: {meaning} must be a whole number, not {text!r}") from None
    if not 0 <= arg <= limit:
        raise error(f"{item!r}: {meaning} must be between 0 and {limit}"
                    if limit else f"{item!r}: {name} takes no argument")
    return arg


def _parse_weight(item: str, text: str, error: type[ValueError]) -> float:
    if not text.strip():
        if "=" in item:
            raise error(f"{item!r}: missing weight after '='")
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        raise error(f"{item!r}: weight must be a number, not {text!r}") from None
    if not weight > 0 or weight == float("inf"):
        raise error(f"{item!r}: weight must be a positive finite number")
    return weight


def format_mix(entries: list[MixEntry]) -> str:
    """The canonical spelling of a parsed mix."""
    return ",".join(str(entry) for entry in entries)


@dataclass(frozen=True)
class Kind:
    """One request kind, ready for the hot loop."""

    op: int
    arg: int
    payload: bytes
    frame: bytes  # the encoded request
    reply_length: int  # header + payload of a correct reply
    check: bytes  # a correct reply starts with exactly these bytes
    full_check: bool  # ``check`` is the whole reply (the value is verified too)

    def describe(self) -> str:
        return f"{Op(self.op).name.lower()}:{self.arg}"


def build_kind(entry: MixEntry, payload_seed: int = 0, verify: bool = False) -> Kind:
    """Prebuild the request frame and the reply check for one mix entry.

    ECHO payloads are pseudo-random bytes (from ``payload_seed``), so a server that mixes up
    replies is caught; WORK and SLEEP carry no payload. With ``verify``, WORK's result is
    computed here, once, with ``protocol.work``.
    """
    op, _, _ = OPERATIONS[entry.op]
    payload = random.Random(payload_seed).randbytes(entry.arg) if op == Op.ECHO else b""
    frame = encode_request(op, entry.arg, payload)
    if op == Op.WORK:
        if verify:
            reply = encode_response(Status.OK, work(payload, entry.arg))
            return Kind(op, entry.arg, payload, frame, len(reply), reply, True)
        # length 0 and status OK, any value: the header without its 4-byte value field
        prefix = HEADER.pack(0, Status.OK, 0)[:HEADER_SIZE - 4]
        return Kind(op, entry.arg, payload, frame, HEADER_SIZE, prefix, False)
    reply = encode_response(Status.OK, 0, payload)
    return Kind(op, entry.arg, payload, frame, len(reply), reply, True)


def kind_sequence(weights: list[float], seed: int, length: int = SEQUENCE_LENGTH) -> list[int]:
    """Indices into the mix drawn by weight: a connection cycles through these."""
    if len(weights) == 1:
        return [0]
    return random.Random(seed).choices(range(len(weights)), weights=weights, k=length)


def _describe(entry: MixEntry) -> str:
    return f"{entry.op}:{entry.arg}"


class ConcbenchWire:
    """concbench's own protocol (docs/protocol.md) as the swarm speaks it: the mix, the
    prebuilt kinds, and the framing its slow path splits replies with (``clients.wire``)."""

    name = "concbench"
    min_reply = HEADER_SIZE  # no reply is shorter than its header
    # slowloris: an ECHO declaring SLOWLORIS_PAYLOAD bytes (the swarm never sends its last one)
    slow_frame = encode_request(Op.ECHO, 0, bytes(SLOWLORIS_PAYLOAD))

    def parse_mix(self, spec: str) -> list[MixEntry]:
        return parse_mix(spec)

    def describe(self, entry: MixEntry) -> str:
        return _describe(entry)

    def format_mix(self, entries: list[MixEntry]) -> str:
        return format_mix(entries)

    def build_kind(self, entry: MixEntry, payload_seed: int = 0, verify: bool = False) -> Kind:
        return build_kind(entry, payload_seed, verify)

    def wait_us(self, entry: MixEntry) -> int:
        """How long the server is asked to wait before answering (SLEEP's argument)."""
        return entry.arg if entry.op == "sleep" else 0

    def reply_end(self, data: bytes | bytearray, pos: int, avail: int) -> int | None:
        """Where the frame starting at ``pos`` ends, None while incomplete; ``MixError`` for
        a length over MAX_PAYLOAD (the stream cannot be resynchronised)."""
        if avail - pos < HEADER_SIZE:
            return None
        length = HEADER.unpack_from(data, pos)[0]
        if length > MAX_PAYLOAD:
            raise MixError(f"a reply of {length} payload bytes (over {MAX_PAYLOAD})")
        end = pos + HEADER_SIZE + length
        return end if end <= avail else None

    def classify(self, data: bytes | bytearray, pos: int, end: int) -> tuple[str, bool, bool]:
        """A complete reply that is not the expected one: its error kind, whether it is an
        error reply, and whether the server closes the connection after it."""
        _, status, value = HEADER.unpack_from(data, pos)
        if status == Status.ERROR:
            outcome = "over_capacity" if value == ErrorValue.OVER_CAPACITY else f"error_{value}"
            return outcome, True, value in (ErrorValue.FRAME_TOO_LARGE, ErrorValue.OVER_CAPACITY)
        return "mismatch", False, False


CONCBENCH = ConcbenchWire()
