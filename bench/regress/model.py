"""What the regression gate measures: its cases, profiles, sides and samples (no I/O), and
the error that stops it (``CannotRun``).

Shared by ``check`` (the measuring), ``verdict`` (the statistics and the verdict), ``git`` and
``sampler`` (one runner trial per sample), so none imports another's module to name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class GateCase:
    """One load point every model is measured at (closed loop)."""

    name: str
    mix: str
    connections: int


@dataclass(frozen=True)
class Profile:
    """What a check measures: models (None = every model both sides have), cases, sample plan."""

    name: str
    models: tuple[str, ...] | None
    cases: tuple[GateCase, ...]
    samples: int  # per side and pass
    duration_s: float  # measured part of one sample
    warmup_s: float  # excluded from every figure
    workers: int = 1


ECHO = GateCase("echo64-c16", "echo:64", 16)
WORK = GateCase("work2k-c16", "work:2000", 16)

# Sample length, measured with ``python -m bench calibrate`` on the 2-core machine while
# other jobs loaded it (load average 4-11): the robust CV of server CPU per request was 10-13 %
# for 0.5 s samples, 3-6 % for 1 s, 3-8 % for 2 s and 1.5-3 % for 4 s; throughput's CV was
# 10-40 % at every length (it follows the neighbours' load, not the code). Each sample also
# costs about 1.5-2 s of server and swarm start-up, so 1 s samples (+0.3 s warm-up) buy the
# most precision per minute; six per side give a one-sided Mann-Whitney p as low as 0.001.
PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", ("threaded", "epoll", "asyncio"), (ECHO,), samples=6,
                     duration_s=1.0, warmup_s=0.3),
    "default": Profile("default", None, (ECHO, WORK), samples=6, duration_s=1.0, warmup_s=0.3),
}


@dataclass(frozen=True)
class ServerSource:
    """Where one side's servers come from."""

    side: str  # "base" or "head"
    root: Path  # the tree whose ``servers`` package is run
    revision: str


@dataclass
class Sample:
    """One fixed-work measurement of one side's server."""

    side: str
    model: str
    case: str
    index: int  # position in the pass's A B B A schedule
    ok: bool
    throughput_rps: float | None = None
    cpu_us_per_request: float | None = None
    client_saturated: bool = False
    failure: str | None = None
    wall_s: float = 0.0


class Sampler(Protocol):
    """Measures one sample: start ``source``'s server for ``model``, load it, stop it."""

    def __call__(self, source: ServerSource, model: str, case: GateCase, profile: Profile,
                 index: int) -> Sample: ...


class CannotRun(Exception):
    """The check cannot run, or the two revisions cannot be compared (exit status 2)."""
