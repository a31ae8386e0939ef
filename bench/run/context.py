"""What a trial runs in: the run-wide context, where its server starts, where its
processes write, and the two ways a trial ends early (failed, interrupted)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import REPO_ROOT
from bench.environment import Placement
from bench.launch import LaunchedServer, child_env, server_argv
from bench.load import LoadService
from bench.store import TrialSpec

TAIL_CHARS = 3000
SWARM_START_ALLOWANCE_S = 10.0  # interpreter start, worker processes, connecting


class TrialFailed(Exception):
    """The trial cannot give a valid measurement; the message says why."""


class TrialInterrupted(Exception):
    """A stop was requested (Ctrl-C) while the trial ran; its processes are stopped."""


def default_swarm_command() -> list[str]:
    """How the swarm is started: the running interpreter, ``-m clients swarm``."""
    return [sys.executable, "-m", "clients", "swarm"]


class ServerLauncher(Protocol):
    """Where a trial's server runs. ``launch`` starts it through the launch contract and
    returns at once, with ``LaunchedServer``'s methods (LaunchFailed: it cannot start there)."""

    def launch(self, spec: TrialSpec, context: TrialContext, out_path: Path,
               err_path: Path) -> LaunchedServer: ...


class LocalLauncher:
    """This machine: the server on the placement's server CPUs, from ``server_root``."""

    def launch(self, spec: TrialSpec, context: TrialContext, out_path: Path,
               err_path: Path) -> LaunchedServer:
        return LaunchedServer(server_command(spec), out_path, err_path,
                              cpus=server_cpus(spec, context.placement),
                              cwd=context.server_root,
                              env=child_env(context.server_root,
                                            dict(spec.server.interpreter_env)))


LOCAL = LocalLauncher()


@dataclass
class TrialContext:
    """What stays the same from one trial to the next."""

    placement: Placement
    work_dir: Path  # server and swarm output go to <work_dir>/<trial_id>.*
    run_id: str = ""
    server_root: Path = REPO_ROOT  # cwd and PYTHONPATH of the server (a worktree, for regress)
    swarm_root: Path = REPO_ROOT
    swarm_command: Sequence[str] = field(default_factory=default_swarm_command)
    stop: threading.Event = field(default_factory=threading.Event)
    swarm_allowance_s: float = SWARM_START_ALLOWANCE_S  # beyond warm-up, duration, timeouts
    # interpreter tag (or path, untagged) -> its description (version, gil_enabled...), copied
    # into each record
    interpreters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # a long-lived swarm (bench/run/swarm_service.py, or bench/hosts/swarm.py across load
    # hosts); None: a swarm process per trial, from ``swarm_command``
    swarm_service: LoadService | None = None
    # the server and load hosts (bench/hosts/session.py); None: all on this machine
    hosts: Any = None
    # where each trial's server starts: this machine, or the server host (the HostsSession)
    launcher: ServerLauncher = LOCAL


def tail(path: Path, chars: int = TAIL_CHARS) -> str | None:
    """The last ``chars`` characters of a log file, or None if it is empty or missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars * 2))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    return text[-chars:] or None


class TrialLogs:
    """Where one trial's processes write: <work_dir>/<trial_id>.{server,swarm}.{out,err}."""

    def __init__(self, work_dir: Path, trial_id: str) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        base = work_dir / trial_id
        self.server_out = base.with_name(f"{trial_id}.server.out")
        self.server_err = base.with_name(f"{trial_id}.server.err")
        self.swarm_out = base.with_name(f"{trial_id}.swarm.out")
        self.swarm_err = base.with_name(f"{trial_id}.swarm.err")
        self.swarm_json = base.with_name(f"{trial_id}.swarm.json")
        self.swarm_json.unlink(missing_ok=True)


def server_command(spec: TrialSpec) -> list[str]:
    """The launch contract: ``<interpreter> -m servers MODEL --host 127.0.0.1 --port 0``."""
    server = spec.server
    return server_argv(server.model, ["--host", "127.0.0.1", "--port", "0", *server.args],
                       server.interpreter)


def server_cpus(spec: TrialSpec, placement: Placement) -> tuple[int, ...] | None:
    """The CPUs a trial's server runs on: the placement's, or the first ``server_cpu_count``
    of the run's CPUs where the case asks for a count (the swarm stays where the placement put
    it). Not this process's affinity: the runner keeps itself off the server's CPUs."""
    count = spec.case.server_cpu_count
    if not count:
        return placement.server_cpus
    return tuple(placement.cpus_used()[:count])

