"""One trial's swarm: its command line, how many processes, the descriptor limit, the
process run to completion under a deadline, its record read back and judged."""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.launch import child_env
from bench.run.context import TrialContext, TrialFailed, TrialInterrupted, TrialLogs
from bench.run.workloads import swarm_options
from bench.store import TrialSpec, read_json
from clients._steady import FALLBACK_S as STEADY_FALLBACK_S
from protocol import launch

POLL_S = 0.005  # how often a wait on a swarm process looks
SWARM_STOP_GRACE_S = 1.0
FD_MARGIN = 64  # descriptors a process needs besides its connections (as clients.swarm says)


def swarm_arguments(spec: TrialSpec, host: str, port: int, workers: int,
                    json_path: Path) -> list[str]:
    """The swarm's command-line options for this trial."""
    case = spec.case
    args = ["--target", f"{host}:{port}", "--connections", str(case.connections),
            "--workers", str(workers), "--duration", f"{case.duration_s:g}",
            "--warmup", f"{case.warmup_s:g}", "--mode", case.mode,
            "--pipeline", str(case.pipeline), "--mix", case.mix,
            "--timeout", f"{case.timeout_s:g}", "--json", str(json_path)]
    if case.mode == "open":
        if not case.rate:
            raise TrialFailed("open-loop trial without a rate")
        args += ["--rate", f"{case.rate:.1f}"]
    if case.steady:
        args += ["--steady", "--min-requests", str(case.min_requests),
                 "--max-duration", f"{case.max_duration_s:g}"]
    if case.idle_connections:
        args += ["--idle-connections", str(case.idle_connections)]
    if case.connect_rate:
        args += ["--connect-rate", f"{case.connect_rate:g}"]
    return [*args, *swarm_options(case), *case.swarm_args]


def swarm_workers(spec: TrialSpec, default: int) -> int:
    """Swarm processes for a trial: the case's or the placement's, at least as many as the
    descriptor limit needs to spread the sockets, never more than the busy connections."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = -(-spec.sockets // max(1, soft - FD_MARGIN))
    return max(1, min(max(spec.case.workers or default, needed), spec.case.connections))


def raise_fd_limit(sockets: int) -> str | None:
    """Lift this process's descriptor limit (the servers and swarms it starts inherit it); a
    note when a process still cannot hold ``sockets`` connections, saying what was possible."""
    soft, hard, problem = launch.raise_fd_limit(sockets + FD_MARGIN)
    if sockets + FD_MARGIN <= soft:
        return None
    return (f"file descriptors: a server holding {sockets:,} connections needs about "
            f"{sockets + FD_MARGIN:,}, but a process may open {soft:,} (hard limit {hard:,}, "
            f"which only root can raise: ulimit -Hn, /etc/security/limits.conf; {problem}); "
            "such a server will refuse connections past its limit")


@dataclass
class SwarmRun:
    returncode: int | None
    start_s: float
    end_s: float  # when the load ended: the swarm process exited, or the service drained
    timed_out: bool
    done_s: float | None = None  # service: when its record was written


def swarm_budget_s(spec: TrialSpec, context: TrialContext) -> float:
    """The longest a trial's swarm may take before the server counts as hung."""
    case = spec.case
    window = max(case.duration_s, case.max_duration_s)
    fallback = STEADY_FALLBACK_S if case.steady else 0.0
    return (context.swarm_allowance_s + spec.ramp_s() + case.warmup_s + fallback + window
            + 2 * case.timeout_s + case.pause_s + spec.sockets * 0.002)


def run_swarm(spec: TrialSpec, context: TrialContext, logs: TrialLogs, address: tuple[str, int],
               t0: float) -> SwarmRun:
    """Run a swarm process to completion (bounded by a deadline); stop it whatever happens."""
    placement = context.placement
    workers = swarm_workers(spec, placement.swarm_workers())
    command = [*context.swarm_command,
               *swarm_arguments(spec, *address, workers, logs.swarm_json)]
    budget = swarm_budget_s(spec, context)
    start = time.monotonic()
    with logs.swarm_out.open("wb") as out, logs.swarm_err.open("wb") as err:
        swarm = procs.spawn(command, cpus=placement.swarm_cpus, cwd=context.swarm_root,
                            env=child_env(context.swarm_root), stdout=out, stderr=err)
    timed_out = False
    try:
        while True:
            try:
                swarm.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if context.stop.is_set():
                raise TrialInterrupted
            if time.monotonic() - start > budget:
                timed_out = True
                break
    finally:
        procs.stop(swarm, sig=signal.SIGINT, grace_s=SWARM_STOP_GRACE_S)
    return SwarmRun(None if timed_out else swarm.returncode, start - t0,
                     time.monotonic() - t0, timed_out)


def read_swarm(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def measured_window(swarm: Mapping[str, Any] | None, run: SwarmRun, t0: float,
                    t0_wall: float, duration_s: float) -> tuple[float, float]:
    """The swarm's measured window in trial time (seconds since the server started): from
    the swarm's own stamps (its monotonic clock is ours: CLOCK_MONOTONIC is system-wide), else
    its wall-clock stamps, else the last ``duration_s`` before the swarm ended."""
    window = (swarm or {}).get("window") or {}
    for start_key, end_key, origin in (("monotonic_start_s", "monotonic_end_s", t0),
                                       ("unix_start_s", "unix_end_s", t0_wall)):
        start, end = window.get(start_key), window.get(end_key)
        if isinstance(start, int | float) and isinstance(end, int | float) and end > start:
            return (start - origin, end - origin)
    measured = (swarm or {}).get("duration_s") or duration_s
    return (max(run.start_s, run.end_s - measured), run.end_s)


def check_outcome(crashed: bool, returncode: int | None, run: SwarmRun,
                   swarm: Mapping[str, Any] | None) -> None:
    """Raise TrialFailed when the figures cannot stand for the server under load."""
    if crashed:
        raise TrialFailed(f"server exited with status {returncode} during the trial")
    if run.timed_out:
        raise TrialFailed("swarm did not finish in time (server hung?); stopped it")
    if swarm is None:
        raise TrialFailed(f"swarm wrote no result (exit status {run.returncode})")
    if run.returncode == 2:
        raise TrialFailed("swarm could not run (exit status 2)")
    if not swarm.get("requests"):
        raise TrialFailed("server answered no request in the measured window")


