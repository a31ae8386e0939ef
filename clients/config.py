"""What the swarm is asked to run (``SwarmConfig``), checked before anything starts, and where.

``SwarmConfig.check`` refuses, with one clear message, any setting the swarm cannot run:
impossible counts, an unknown protocol or mix, more sockets per worker than the descriptor
limit allows; ``resolve`` turns ``--target`` into an address.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from clients.mix import DEFAULT_MIX
from clients.wire import DEFAULT_PROTOCOL, WIRES, Wire, wire_for
from protocol.launch import raise_fd_limit

FD_MARGIN = 64  # descriptors a worker needs besides its sockets (epoll, pipes, the interpreter)
# slowloris: a slow connection sends its wire's ``slow_frame`` (an ECHO declaring 4,096 payload
# bytes, never finished), this much of it at once (concbench: the header's length and op)
SLOWLORIS_FIRST_BYTES = 5


class SwarmError(Exception):
    """The swarm cannot run at all (bad settings, unknown host, workers that do not start)."""


@dataclass
class SwarmConfig:
    """What to run. ``rate`` (total requests/s) is required in open loop, ignored in closed."""

    target: str
    connections: int = 50
    workers: int = 1
    duration: float = 10.0
    warmup: float = 1.0
    mode: str = "closed"
    pipeline: int = 1
    rate: float | None = None
    arrivals: str = "constant"
    mix: str = DEFAULT_MIX
    connect_rate: float = 0.0
    timeout: float = 5.0
    verify: bool = False
    interval: float = 1.0
    seed: int | None = None
    idle_connections: int = 0  # opened after the busy ones, held, never sent on
    requests_per_connection: int = 0  # churn: close and reconnect after this many (0: never)
    slowloris: int = 0  # extra connections, opened first, sending a frame a byte at a time
    slowloris_interval: float = 2.0  # seconds between a slow connection's bytes
    dedicated: int = 0  # the first busy connections send only the mix's first kind
    protocol: str = DEFAULT_PROTOCOL  # what the swarm speaks: ``clients.wire.WIRES``
    # steady state (clients/_steady.py): the window opens once every connection is answered
    # and throughput has settled, ``warmup`` being then the most the warm-up may take; it
    # lasts long enough for ``min_requests`` replies, from ``duration`` to ``max_duration``
    steady: bool = False
    min_requests: int = 0
    max_duration: float = 0.0  # 0: ``duration``

    def check(self) -> None:
        """Raise ``SwarmError`` naming the first impossible setting."""
        problems = [
            (self.connections < 1, "--connections must be at least 1"),
            (self.workers < 1, "--workers must be at least 1"),
            (self.workers > self.connections,
             f"--workers ({self.workers}) cannot exceed --connections ({self.connections})"),
            (not self.duration > 0, "--duration must be positive"),
            (not self.warmup >= 0, "--warmup cannot be negative"),
            (self.min_requests < 0, "--min-requests cannot be negative"),
            (self.min_requests > 0 and not self.steady,
             "--min-requests sizes the window from the settled rate: it needs --steady"),
            (not self.max_duration >= 0, "--max-duration cannot be negative"),
            (self.mode not in ("closed", "open"), "--mode is closed or open"),
            (self.pipeline < 1, "--pipeline must be at least 1"),
            (self.mode == "open" and not (self.rate or 0) > 0,
             "--mode open needs --rate R (total requests per second)"),
            (self.arrivals not in ("constant", "poisson"), "--arrivals is constant or poisson"),
            (not self.connect_rate >= 0, "--connect-rate cannot be negative"),
            (not self.timeout > 0, "--timeout must be positive"),
            (not self.interval > 0, "--interval must be positive"),
            (self.idle_connections < 0, "--idle-connections cannot be negative"),
            (self.requests_per_connection < 0, "--requests-per-connection cannot be negative"),
            (self.requests_per_connection > 0 and self.mode != "closed",
             "--requests-per-connection (churn) runs in closed loop only"),
            (self.slowloris < 0, "--slowloris cannot be negative"),
            (not self.slowloris_interval > 0, "--slowloris-interval must be positive"),
            (not 0 <= self.dedicated < self.connections,
             "--dedicated must leave at least one connection for the rest of the mix"),
            (self.protocol not in WIRES,
             f"--protocol {self.protocol!r}: known protocols are {', '.join(WIRES)}"),
        ]
        for failed, message in problems:
            if failed:
                raise SwarmError(message)
        try:
            entries = self.wire.parse_mix(self.mix)
        except ValueError as error:
            raise SwarmError(f"--mix: {error}") from None
        if self.dedicated and len(entries) < 2:
            raise SwarmError("--dedicated needs a mix of two kinds or more (the dedicated "
                             "connections send the first; the others, the rest)")
        check_fd_limit(self)

    @property
    def wire(self) -> Wire:
        """The protocol's wire object (``clients.wire``)."""
        return wire_for(self.protocol)

    @property
    def sockets(self) -> int:
        """Every connection held at once: busy, idle and slow."""
        return self.connections + self.idle_connections + self.slowloris

    def sockets_per_worker(self) -> int:
        """The most sockets one worker holds (its busy, idle and slow shares)."""
        return sum(-(-count // self.workers) for count in (
            self.connections, self.idle_connections, self.slowloris))


def check_fd_limit(config: SwarmConfig) -> None:
    """Refuse, saying what is possible, a run whose workers would run out of descriptors.

    The limit is raised here, in the parent, first: spawned workers inherit it."""
    soft, hard, problem = raise_fd_limit()
    needed = config.sockets_per_worker() + FD_MARGIN
    if needed <= soft:
        return
    per_worker = max(1, soft - FD_MARGIN)
    workers = -(-config.sockets // per_worker)
    raise SwarmError(
        f"{config.sockets_per_worker():,} sockets per worker need a file-descriptor limit of "
        f"{needed:,}, but a process may open {soft:,} (soft limit; hard limit {hard:,}"
        + (f"; {problem}" if problem else "; only root can raise the hard limit: "
           "ulimit -Hn, /etc/security/limits.conf") + f"): use --workers {workers} or more")


def parse_target(target: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port)."""
    host, colon, port_text = target.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SwarmError(f"--target {target!r}: expected HOST:PORT")
    return host.strip("[]"), int(port_text)


def resolve(target: str) -> tuple[int, tuple[Any, ...]]:
    """The address family and socket address to connect to."""
    host, port = parse_target(target)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise SwarmError(f"cannot resolve {host!r}: {error}") from None
    family, _, _, _, address = infos[0]
    return family, address


