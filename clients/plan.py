"""What a swarm worker is handed: its plan (``WorkerPlan``) and the run's timeline (``Timeline``).

The parent (``clients.swarm``, ``clients.service``, and across hosts ``bench/hosts``) builds
them; a worker (``clients.worker``) only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.wire import DEFAULT_PROTOCOL, ReplyKind


@dataclass(frozen=True)
class Timeline:
    """When things happen, in ``time.monotonic_ns``: the same for every worker of a run."""

    start_ns: int  # begin connecting
    load_ns: int  # the open-loop schedule starts (start + connection ramp)
    window_ns: int  # the measured window starts (load + warm-up)
    end_ns: int  # the measured window ends; no new requests after it
    drain_ns: int  # stop waiting for replies still in flight


@dataclass(frozen=True)
class WorkerPlan:
    """Everything one worker needs besides its timeline."""

    index: int
    family: int
    address: tuple[Any, ...]
    connections: int
    first_connection: int  # global number of this worker's first connection (for seeds)
    mode: str  # "closed" or "open"
    pipeline: int  # requests in flight per connection (open loop: the cap)
    rate: float  # open loop: this worker's share of requests per second
    arrivals: str  # "constant" or "poisson"
    kinds: tuple[ReplyKind, ...]
    weights: tuple[float, ...]
    connect_rate: float  # this worker's connections per second; 0: all at once
    timeout_ns: int
    interval_ns: int
    seed: int
    idle: int = 0  # connections opened after the busy ones and held without sending
    dedicated: int = 0  # the first busy connections send kind 0 only; the others never do
    # churn: requests per connection before it is closed and a fresh one opened (0: never)
    requests_per_connection: int = 0
    # slowloris (clients/worker/slowloris.py): connections opened first, sending part of
    # ``slowloris_frame``, ``slowloris_first`` bytes of it at once, then one more byte every
    # ``slowloris_interval_ns``, never the last one
    slowloris: int = 0
    slowloris_first: int = 0
    slowloris_interval_ns: int = 0
    slowloris_frame: bytes = b""
    # an idle connection's one request when it opens, and the reply it must get: the server
    # has accepted and registered it (not left it in the listen queue); then it stays silent
    idle_frame: bytes = b""
    idle_reply: bytes = b""
    protocol: str = DEFAULT_PROTOCOL  # the wire (``clients.wire``): framing of the slow path
    steady: bool = False  # the parent opens the window once the load is steady (``Control``)
