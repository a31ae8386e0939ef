"""The runner's one interface to whatever drives the load: how a trial's swarm is asked for.

Two implementations: ``bench/run/swarm_service.py`` (a long-lived swarm on this machine) and
``bench/hosts/swarm.py`` (the swarm across load hosts, over execnet). The runner
(``bench/run/trial.py``) hands one trial's swarm arguments to ``run`` and then waits for the
replies in ``ORDER``; the errors below are all it needs to tell apart.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

ORDER = ("started", "drained", "done")  # a trial's replies, in the order they come


class ServiceError(Exception):
    """The load cannot start, or its driver went away; the message says why."""


class ServiceTimeout(ServiceError):
    """The driver did not answer in time (a hung server keeps it waiting)."""


class ServiceInterrupted(Exception):
    """A stop was requested while waiting for the driver."""


class LoadService(Protocol):
    """What the runner calls. ``wait`` returns the reply ``op`` of the current trial (a later
    reply stands for an earlier one): ``started`` carries ``window_s`` (the measured window,
    our CLOCK_MONOTONIC seconds), ``done`` carries ``status`` and ``log`` once the swarm
    record is written where the arguments' ``--json`` says."""

    starts: int  # driver processes started (a restart after a hung trial adds one)

    def start(self) -> None: ...

    def run(self, args: Sequence[str]) -> None: ...

    def wait(self, op: str, deadline: float, stop: threading.Event | None = None
             ) -> dict[str, Any]: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...
