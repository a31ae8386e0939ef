"""The probe's cases: one request kind on a number of connections, and how many to send."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import Op, encode_request


@dataclass(frozen=True)
class CostCase:
    """One measured load: ``op`` with ``value`` and a ``payload_bytes`` payload.

    ``warmup`` requests first (connections, caches and CPython's specialising interpreter
    settle), then a window of ``short`` requests and a window of ``long`` ones; the figure is
    (cost(long) - cost(short)) / (long - short).
    """

    name: str
    op: Op
    value: int
    payload_bytes: int
    connections: int
    warmup: int
    short: int
    long: int

    @property
    def payload(self) -> bytes:
        # a fixed, non-repeating-looking payload: the same bytes every run
        return bytes((7 * i + 3) % 251 for i in range(self.payload_bytes))

    def request(self) -> bytes:
        return encode_request(self.op, self.value, self.payload)

    @property
    def delta(self) -> int:
        return self.long - self.short


ECHO_C1 = CostCase("echo64-c1", Op.ECHO, 0, 64, 1, warmup=200, short=200, long=1000)
ECHO_C16 = CostCase("echo64-c16", Op.ECHO, 0, 64, 16, warmup=320, short=320, long=1120)
WORK_C1 = CostCase("work2k-c1", Op.WORK, 2000, 64, 1, warmup=10, short=10, long=50)

CASES: dict[str, CostCase] = {case.name: case for case in (ECHO_C1, ECHO_C16, WORK_C1)}
DEFAULT_CASES = ("echo64-c1", "echo64-c16", "work2k-c1")
