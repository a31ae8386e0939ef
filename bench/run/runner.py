"""Trials and runs.

``run_trial(spec, context)`` is one trial, usable on its own (the regression checker reuses
it): start the server through the launch contract on its CPUs, wait for READY, sample its whole
process tree every 100 ms, drive it with the swarm (a subprocess on the other CPUs), stop the
server (SIGTERM, then SIGKILL), and return the trial record of docs/results-format.md.

``Runner`` runs a scenario's plan into a run folder: interleaved repetitions, open-loop sweeps
scaled to each model's measured closed-loop maximum, failed trials recorded and passed over,
Ctrl-C honoured within seconds, ``--resume`` and a progress bar (the summary is the report's).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench import REPO_ROOT, procs
from bench.analysis.frames import is_native
from bench.analysis.validity import client_lag_over_slo, littles_law_ratio
from bench.environment import Placement, cpu_list, load_average
from bench.launch import (
    LaunchedServer,
    LaunchFailed,
    LaunchInterrupted,
    child_env,
    server_argv,
)
from bench.load import LoadService, ServiceError, ServiceInterrupted, ServiceTimeout
from bench.run.rates import choose_equal_load, sweep_rate
from bench.run.scenario import trial_estimate_s
from bench.run.workloads import add_reference, derived_figures, swarm_options
from bench.sampling import TreeSampler, held_connections, summarize_server
from bench.store import FORMAT, RunStore, TrialSpec, read_json, utc_now
from clients._steady import FALLBACK_S as STEADY_FALLBACK_S
from protocol import launch

POLL_S = 0.005  # how often a wait on a swarm process looks
TAIL_CHARS = 3000
SWARM_START_ALLOWANCE_S = 10.0  # interpreter start, worker processes, connecting
SWARM_STOP_GRACE_S = 1.0
SERVICE_DONE_TIMEOUT_S = 10.0  # after the drain, the service folds and writes the record
REFERENCE_PROBES = 3  # equal load: probes of the reference at the chosen rate, at most...
REFERENCE_STEP = 0.7  # ...each lowering it by this factor while the client cannot carry it
FD_MARGIN = 64  # descriptors a process needs besides its connections (as clients.swarm says)


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


def derive(swarm: Mapping[str, Any] | None, server: Mapping[str, Any] | None,
           connections: int) -> dict[str, Any]:
    """The per-trial figures the report compares; None where not computable."""
    swarm = swarm or {}
    server = server or {}
    latency = swarm.get("latency_us") or {}
    requests = swarm.get("requests")
    errors_by_kind = swarm.get("errors") or {}
    errors = sum(v for v in errors_by_kind.values() if isinstance(v, int | float)) \
        if isinstance(errors_by_kind, dict) else None
    duration = swarm.get("duration_s")
    span = server.get("span_s")
    cpu_rate = ctx_rate = None
    if span:
        cpu_rate = (server["cpu_user_s"] + server["cpu_system_s"]) / span
        ctx_rate = server["ctx_switches"] / span
    if server.get("cpu_ns") is not None and server.get("cpu_ns_span_s"):
        # the threads' schedstat nanoseconds at the window's edges (bench/sampling.py), not
        # 10 ms ticks
        cpu_rate = server["cpu_ns"] / 1e9 / server["cpu_ns_span_s"]
    per_request = bool(requests and duration)
    rss_growth = None
    if server.get("rss_max") is not None and server.get("rss_idle") is not None:
        rss_growth = max(0, server["rss_max"] - server["rss_idle"])
    # divided by the connections the server held (its descriptors), not those configured: a
    # server that accepted a third of them is not three times leaner
    held = held_connections(server)
    if held is None and server.get("rss_max") is not None:
        held = connections
    figures = {
        "throughput_rps": swarm.get("throughput_rps"),
        "p50_us": latency.get("p50"), "p90_us": latency.get("p90"),
        "p99_us": latency.get("p99"), "p99_9_us": latency.get("p99_9"),
        "max_us": latency.get("max"), "mean_us": latency.get("mean"),
        "cpu_us_per_request": (cpu_rate * duration / requests * 1e6
                               if per_request and cpu_rate is not None else None),
        "rss_per_connection_bytes": (rss_growth / held
                                     if rss_growth is not None and held else None),
        "ctx_switches_per_request": (ctx_rate * duration / requests
                                     if per_request and ctx_rate is not None else None),
        "error_rate": (errors / (requests + errors)
                       if errors is not None and requests is not None and requests + errors
                       else None),
        "errors": errors,
        "client_saturated": bool((swarm.get("client") or {}).get("saturated", False)),
        "server_cpu_percent": server.get("cpu_percent"),
        "requests": requests,
        # closed loop: throughput × mean latency ÷ in flight, 1 by Little's law (validity.py)
        "littles_law_ratio": littles_law_ratio(swarm),
    }
    figures.update(derived_figures(swarm, cpu_rate))  # churn's and slowloris', where they ran
    return figures


# -- one trial -------------------------------------------------------------------------------


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


class _Logs:
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
class _SwarmRun:
    returncode: int | None
    start_s: float
    end_s: float  # when the load ended: the swarm process exited, or the service drained
    timed_out: bool
    done_s: float | None = None  # service: when its record was written


def _swarm_budget_s(spec: TrialSpec, context: TrialContext) -> float:
    """The longest a trial's swarm may take before the server counts as hung."""
    case = spec.case
    window = max(case.duration_s, case.max_duration_s)
    fallback = STEADY_FALLBACK_S if case.steady else 0.0
    return (context.swarm_allowance_s + spec.ramp_s() + case.warmup_s + fallback + window
            + 2 * case.timeout_s + case.pause_s + spec.sockets * 0.002)


def _run_swarm(spec: TrialSpec, context: TrialContext, logs: _Logs, address: tuple[str, int],
               t0: float) -> _SwarmRun:
    """Run a swarm process to completion (bounded by a deadline); stop it whatever happens."""
    placement = context.placement
    workers = swarm_workers(spec, placement.swarm_workers())
    command = [*context.swarm_command,
               *swarm_arguments(spec, *address, workers, logs.swarm_json)]
    budget = _swarm_budget_s(spec, context)
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
    return _SwarmRun(None if timed_out else swarm.returncode, start - t0,
                     time.monotonic() - t0, timed_out)


def _read_swarm(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def measured_window(swarm: Mapping[str, Any] | None, run: _SwarmRun, t0: float,
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


def _check_outcome(crashed: bool, returncode: int | None, run: _SwarmRun,
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


def base_record(spec: TrialSpec, context: TrialContext) -> dict[str, Any]:
    """A trial record's identity and settings (docs/results-format.md), before any result:
    the spec's own fields, then where it ran, then the result fields still empty."""
    server = spec.server
    interpreter = context.interpreters.get(server.interpreter_tag or server.interpreter) or {}
    return {
        "format": FORMAT, **spec.as_record(), "run_id": context.run_id,
        "interpreter_version": interpreter.get("version"),
        "gil_enabled": interpreter.get("gil_enabled"),
        "free_threaded_build": interpreter.get("free_threaded_build"),
        "placement": context.placement.name,
        "hosts": context.hosts.describe() if context.hosts is not None else None,
        "server_cpus": cpu_list(server_cpus(spec, context.placement)),
        "swarm_cpus": cpu_list(context.placement.swarm_cpus),
        "status": "failed", "failure": None, "stderr_tail": None, "swarm_stderr_tail": None,
        "notes": [], "started_at": utc_now(), "wall_s": None,
        "swarm": None, "swarm_exit": None, "server": None, "server_exit": None, "derived": None,
    }


def server_cpus(spec: TrialSpec, placement: Placement) -> tuple[int, ...] | None:
    """The CPUs a trial's server runs on: the placement's, or the first ``server_cpu_count``
    of the run's CPUs where the case asks for a count (the swarm stays where the placement put
    it). Not this process's affinity: the runner keeps itself off the server's CPUs."""
    count = spec.case.server_cpu_count
    if not count:
        return placement.server_cpus
    return tuple(placement.cpus_used()[:count])


def failed_record(spec: TrialSpec, context: TrialContext, failure: str) -> dict[str, Any]:
    """A record for a trial that could not even start (say, no base for a sweep point)."""
    record = base_record(spec, context)
    record.update(failure=failure, wall_s=0.0, derived=derive(None, None, spec.sockets))
    return record


class Trial:
    """One trial's processes and record, in the phases a run overlaps with its neighbours':

    ``launch`` starts the server and returns at once (the next trial's server boots while this
    one's predecessor is being stopped); ``measure`` waits for READY, samples the server and
    drives the load until the server is no longer measured (the swarm drained); ``finish``
    stops the server, collects the swarm's record and returns the trial record. ``abandon``
    stops everything of an interrupted trial.
    """

    def __init__(self, spec: TrialSpec, context: TrialContext) -> None:
        self.spec, self.context = spec, context
        self.record = base_record(spec, context)
        self.logs = _Logs(context.work_dir, spec.trial_id)
        self.t0, self.t0_wall = time.monotonic(), time.time()
        self.server: LaunchedServer | None = None  # or bench.hosts' RemoteServer
        self.sampler: TreeSampler | None = None  # or bench.hosts' RemoteSampler
        self.launch_failure: str | None = None
        self.run: _SwarmRun | None = None
        self.failure: str | None = None
        self.crashed = False
        self.timing: dict[str, float] = {}
        self.extra: dict[str, Any] = {}  # the runner's additions to the record (rate basis...)
        self.interrupted = False  # the run was stopped while this trial's load ran

    def _stamp(self, name: str) -> None:
        self.timing[name] = round(time.monotonic() - self.t0, 4)

    def launch(self) -> Trial:
        """Start the server through the launch contract, wherever the context's launcher puts
        it (it boots meanwhile)."""
        try:
            self.server = self.context.launcher.launch(self.spec, self.context,
                                                       self.logs.server_out, self.logs.server_err)
        except LaunchFailed as error:
            self.launch_failure = str(error)
        return self

    def measure(self, spec: TrialSpec | None = None) -> None:
        """READY, sampling and the load (``spec``: this trial with its rate filled in). A
        failure is kept for ``finish``; TrialInterrupted propagates (then call ``abandon``)."""
        if spec is not None:
            self.spec = spec
            self.record.update(spec.as_record())
        try:
            self._measure()
        except TrialFailed as failure:
            self.failure = str(failure)
        finally:
            if self.sampler is not None:
                self.sampler.stop()
        # a Ctrl-C during the load reaches the swarm too (the terminal signals the whole
        # group; across hosts the agents pass it on): a swarm that ended for it is not a
        # measurement, kept or failed, but an interrupted trial
        self.interrupted = self.context.stop.is_set()
        self._stamp("measured_s")

    def _measure(self) -> None:
        if self.server is None and self.launch_failure is None:
            self.launch()
        if self.launch_failure is not None:
            raise TrialFailed(self.launch_failure)
        assert self.server is not None
        try:
            address = self.server.wait_ready(self.spec.ready_timeout_s, self.context.stop)
        except LaunchFailed as error:
            raise TrialFailed(str(error)) from None
        except LaunchInterrupted:
            raise TrialInterrupted from None
        self.record["ready_s"] = round(time.monotonic() - self.t0, 4)
        self.sampler = self.server.sampler(self.t0)  # on the server's host, wherever that is
        self.sampler.sample_now()
        self.sampler.start()
        if self.context.swarm_service is None:
            if self.spec.case.pause_s:
                raise TrialFailed("pausing the server needs the swarm service (a local run)")
            self.run = _run_swarm(self.spec, self.context, self.logs, address, self.t0)
        else:
            self.run = self._serve_load(address)
        self.crashed = not self.server.alive()

    def _serve_load(self, address: tuple[str, int]) -> _SwarmRun:
        """The load from the swarm service: until it has drained (its record comes later)."""
        service, spec, t0 = self.context.swarm_service, self.spec, self.t0
        assert service is not None and self.sampler is not None
        workers = swarm_workers(spec, self.context.placement.swarm_workers())
        if spec.case.pause_s and not isinstance(self.server, LaunchedServer):
            raise TrialFailed("pausing the server needs it on this machine")
        start = time.monotonic()
        deadline = start + _swarm_budget_s(spec, self.context)
        try:
            service.run(swarm_arguments(spec, *address, workers, self.logs.swarm_json))
            window = service.wait("started", deadline, self.context.stop).get("window_s")
            if window:  # a sample at each end of the window: CPU over exactly the window
                self.sampler.mark(window[0] - t0, window[1] - t0)
            if spec.case.pause_s:
                self._pause_server(window)
            service.wait("drained", deadline, self.context.stop)
        except ServiceInterrupted:
            service.abandon()
            raise TrialInterrupted from None
        except ServiceTimeout:
            service.abandon()
            return _SwarmRun(None, start - t0, time.monotonic() - t0, True)
        except ServiceError as error:
            raise TrialFailed(f"swarm service: {error}") from None
        return _SwarmRun(None, start - t0, time.monotonic() - t0, False)

    def _pause_server(self, window: Sequence[float] | None) -> None:
        """Stop the server's process group ``pause_at_s`` into the window for ``pause_s``,
        then continue it, whatever happens meanwhile (a Ctrl-C included)."""
        case, server = self.spec.case, self.server
        assert isinstance(server, LaunchedServer)
        if not window:  # the swarm ended before its window: nothing to pause
            return
        if _wait_until(window[0] + case.pause_at_s, self.context.stop):
            raise ServiceInterrupted
        group = os.getpgid(server.pid)
        stopped_at = time.monotonic()
        os.killpg(group, signal.SIGSTOP)
        try:
            interrupted = _wait_until(stopped_at + case.pause_s, self.context.stop)
        finally:
            os.killpg(group, signal.SIGCONT)
            self.extra["pause"] = {"at_s": round(stopped_at - window[0], 4),
                                   "s": round(time.monotonic() - stopped_at, 4)}
        if interrupted:
            raise ServiceInterrupted

    def _collect_service(self) -> None:
        """The service's record of this trial (written by ``done``), its log, its status."""
        service, run = self.context.swarm_service, self.run
        if service is None or run is None or run.timed_out:
            return
        try:
            done = service.wait("done", time.monotonic() + SERVICE_DONE_TIMEOUT_S)
        except (ServiceError, ServiceInterrupted):
            service.abandon()
            return
        run.returncode, run.done_s = done.get("status"), round(time.monotonic() - self.t0, 4)
        self.logs.swarm_err.write_text(str(done.get("log") or ""))

    def finish(self) -> dict[str, Any]:
        """Stop the server, collect the swarm's record, and return the trial record (status
        "ok" or "failed")."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.server is not None:
            self.crashed = self.crashed or not self.server.alive()
            stopped = self.server.stop(self.spec.stop_timeout_s)
            self.record["server_exit"] = {"returncode": stopped.returncode,
                                          "killed": stopped.killed,
                                          "stop_s": round(stopped.seconds, 3),
                                          "crashed": self.crashed}
            self._stamp("stopped_s")
        self._collect_service()
        swarm = _read_swarm(self.logs.swarm_json) if self.run is not None else None
        if self.failure is None and self.run is not None:
            try:
                _check_outcome(self.crashed, (self.record["server_exit"] or {}).get(
                    "returncode"), self.run, swarm)
                self.record["status"] = "ok"
            except TrialFailed as failure:
                self.failure = str(failure)
        if self.server is not None and self.server.lost and self.failure is not None:
            self.failure = f"{self.failure}: {self.server.lost}"
        self.record["failure"] = self.failure
        _finish_record(self.record, self.spec, self.logs, self.sampler, self.run, swarm,
                       self.t0, self.t0_wall)
        self._stamp("finished_s")
        self.record["timing"] = self.timing
        return self.record

    def abandon(self) -> None:
        """Stop the sampler and the server of a trial that will have no record."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.server is not None:
            self.server.stop(self.spec.stop_timeout_s)


def _wait_until(when: float, stop: threading.Event) -> bool:
    """Sleep until monotonic ``when`` (bounded by it); True if ``stop`` was set first."""
    return stop.wait(max(0.0, when - time.monotonic()))


def run_trial(spec: TrialSpec, context: TrialContext) -> dict[str, Any]:
    """Run one trial and return its record (status "ok" or "failed", never raising for a
    server's or swarm's fault). Raises TrialInterrupted, with everything stopped, when
    ``context.stop`` is set."""
    trial = Trial(spec, context)
    try:
        trial.launch()
        trial.measure()
    except BaseException:  # TrialInterrupted, or a second Ctrl-C: no record, nothing left
        trial.abandon()
        raise
    return trial.finish()


def _finish_record(record: dict[str, Any], spec: TrialSpec, logs: _Logs,
                   sampler: TreeSampler | None, run: _SwarmRun | None,
                   swarm: dict[str, Any] | None, t0: float, t0_wall: float) -> None:
    """Server figures over the measured window, derived figures, notes and log tails."""
    record["swarm"] = swarm
    if swarm and swarm.get("hosts"):  # across hosts: each host's share of the load
        record["hosts"] = swarm["hosts"]
    if run is not None:
        record["swarm_exit"] = {"returncode": run.returncode, "timed_out": run.timed_out,
                                "start_s": round(run.start_s, 4), "end_s": round(run.end_s, 4)}
        if run.done_s is not None:
            record["swarm_exit"]["done_s"] = run.done_s
    if sampler is not None and sampler.samples and run is not None:
        window = measured_window(swarm, run, t0, t0_wall, spec.case.duration_s)
        record["server"] = summarize_server(sampler.samples, window, run.start_s)
    elif sampler is not None:
        record["server"] = {"samples": sampler.samples}
    record["derived"] = derive(swarm, record["server"] if run is not None else None,
                               spec.sockets)
    exit_info = record["server_exit"] or {}
    if exit_info.get("killed"):
        record["notes"].append(f"server ignored SIGTERM for {spec.stop_timeout_s:g} s and was "
                               "killed")
    elif exit_info.get("returncode") not in (0, None) and not exit_info.get("crashed"):
        record["notes"].append(f"server exited with status {exit_info['returncode']} on "
                               "SIGTERM (the contract says 0)")
    if record["derived"]["client_saturated"]:
        record["notes"].append("client saturated: the figures describe the swarm")
    record["stderr_tail"] = tail(logs.server_err)
    if record["status"] != "ok" or (run is not None and run.returncode not in (0, 1)):
        record["swarm_stderr_tail"] = tail(logs.swarm_err)
    record["wall_s"] = round(time.monotonic() - t0, 3)


# -- a whole run -----------------------------------------------------------------------------


@dataclass
class RunResult:
    status: str  # "complete" | "interrupted"
    records: dict[str, dict[str, Any]]
    ran: int
    skipped: int


class Runner:
    """Runs a plan into a run folder (resuming: trials whose record exists are skipped).

    Trials overlap where nothing is measured: when one trial's load has drained, the next
    trial's server is launched, and boots while this one's server is stopped and its record
    written; the next load starts once that is done (its rate may depend on that record).
    """

    def __init__(self, store: RunStore, trials: Sequence[TrialSpec], context: TrialContext,
                 console: Console | None = None, kill_strays: bool = False,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store, self.trials, self.context = store, list(trials), context
        self.console = console or Console()
        self.kill_strays = kill_strays
        self.on_record = on_record
        self.ran = 0
        self.equal_load: dict[str, dict[str, Any]] = {}

    def run(self) -> RunResult:
        records = self.store.load_trials()
        self.equal_load = dict(self._run_meta().get("equal_load") or {})
        pending = [t for t in self.trials if t.trial_id not in records]
        skipped = len(self.trials) - len(pending)
        if skipped:
            self.console.print(f"resuming: {skipped} of {len(self.trials)} trials already done")
        interrupted = False
        with self.context.placement.off_server_cpus(), self._progress(pending) as (progress, task):
            self._bar = (progress, task)
            try:
                self._run_all(pending, records)
                progress.update(task, description="done", done=f"{len(records)}")
            except TrialInterrupted:
                interrupted = True
            except KeyboardInterrupt:  # a second Ctrl-C: no more grace
                procs.kill_all()
                interrupted = True
        interrupted = interrupted or self.context.stop.is_set()
        return RunResult("interrupted" if interrupted else "complete", records, self.ran,
                         skipped)

    def _run_meta(self) -> dict[str, Any]:
        try:
            return self.store.read_run()
        except (OSError, ValueError):
            return {}

    def _run_all(self, trials: Sequence[TrialSpec], records: dict[str, dict[str, Any]]) -> None:
        """Run these trials in order, each next server booting while the last one stops."""
        current = ahead = finishing = None
        try:
            for index, spec in enumerate(trials):
                if self.context.stop.is_set():
                    raise TrialInterrupted
                current, ahead = ahead or Trial(spec, self.context).launch(), None
                if finishing is not None:
                    self._complete(finishing, records)
                    finishing = None
                self._bar[0].update(self._bar[1], description=spec.trial_id,
                                    done=f"{len(records)}/{len(self.trials)}")
                resolved = self._resolve(spec, records)
                if isinstance(resolved, str):
                    current.abandon()
                    current = None
                    self._store(failed_record(spec, self.context, resolved), spec, records)
                    continue
                current.extra, rated = resolved[1], resolved[0]
                current.measure(rated)
                finishing, current = current, None
                if index + 1 < len(trials) and not self.context.stop.is_set():
                    ahead = Trial(trials[index + 1], self.context).launch()
        except TrialInterrupted:
            for trial in (current, ahead):
                if trial is not None:
                    trial.abandon()
            if finishing is not None and finishing.interrupted:
                finishing.abandon()
            elif finishing is not None:  # measured in full: its record is kept
                self._complete(finishing, records)
            raise
        except BaseException:
            for trial in (current, ahead, finishing):
                if trial is not None:
                    trial.abandon()
            raise
        if finishing is not None:
            self._complete(finishing, records)

    def _resolve(self, spec: TrialSpec, records: Mapping[str, dict[str, Any]]
                 ) -> tuple[TrialSpec, dict[str, Any]] | str:
        """The trial with its open-loop rate filled in, and what to add to its record; or why
        it cannot run (no base to learn the rate from)."""
        case = spec.case
        if case.fraction is not None:
            found = sweep_rate(spec, records)
            if isinstance(found, str):
                return found
            rate, base_trial = found
            return spec.with_rate(rate), {
                "base_trial": base_trial,
                "base_throughput_rps": records[base_trial]["derived"]["throughput_rps"]}
        if case.equal_load is not None:
            choice = self.equal_load.get(case.name)
            if choice is None:
                choice = choose_equal_load(spec, records)
                if isinstance(choice, str):
                    return choice
                self._check_on_reference(spec, choice)
                self.equal_load[case.name] = choice  # one rate for the whole run
                self.store.update_run(equal_load=self.equal_load)
                self._bar[0].console.print(
                    f"equal load for {case.name}: {choice['rate']:,.0f} req/s "
                    f"({choice['rule']}: {choice['slowest']['model']} "
                    f"{choice['slowest']['throughput_rps']:,.0f}, ceiling "
                    f"{choice['ceiling']['model']} {choice['ceiling']['throughput_rps']:,.0f})",
                    soft_wrap=True, highlight=False)
            return spec.with_rate(float(choice["rate"])), {"rate_basis": choice}
        return spec, {}

    def _check_on_reference(self, spec: TrialSpec, choice: dict[str, Any]) -> None:
        """Whether the instrument can carry the equal load: the reference model (native) is
        offered the chosen rate first, in a probe kept out of the records; while the client's
        own lag p99 passes its share of the SLO (the bound validity.py judges every trial by),
        the rate is lowered by REFERENCE_STEP, at most REFERENCE_PROBES times. What was found
        goes into the choice (run.json's equal_load and every trial's rate_basis)."""
        reference = next((t for t in self.trials if t.case.name == spec.case.name
                          and is_native(t.model)), None)
        if reference is None:
            choice["reference_check"] = "not checked: no native model in this run"
            return
        probes = []
        for attempt in range(1, REFERENCE_PROBES + 1):
            probe = replace(reference, id_override=f"{spec.case.name}--probe{attempt}")
            trial = Trial(probe, self.context).launch()
            trial.measure(probe.with_rate(float(choice["rate"])))
            record = trial.finish()
            lag = client_lag_over_slo(record)
            probes.append({"rate": choice["rate"], "status": record.get("status"),
                           "lag_p99_us": (((record.get("swarm") or {}).get("client") or {})
                                          .get("lag_us") or {}).get("p99"),
                           "carried": record.get("status") == "ok" and lag is None})
            if probes[-1]["carried"] or record.get("status") != "ok":
                break
            choice["rate"] = round(choice["rate"] * REFERENCE_STEP, 1)
        choice["reference_check"] = probes
        self._bar[0].console.print(
            f"equal load checked on {reference.model}: " + "; ".join(
                f"{p['rate']:,.0f} req/s {'carried' if p['carried'] else 'not carried'} "
                f"(client lag p99 {p['lag_p99_us'] or 0:,.0f} µs)" for p in probes),
            soft_wrap=True, highlight=False)

    def _complete(self, trial: Trial, records: dict[str, dict[str, Any]]) -> None:
        """Stop a measured trial's server, build and store its record."""
        record = trial.finish()
        record.update(trial.extra)
        add_reference(record, trial.spec, records)  # beside its reference case's trial
        self._store(record, trial.spec, records)

    def _store(self, record: dict[str, Any], spec: TrialSpec,
               records: dict[str, dict[str, Any]]) -> None:
        if self.kill_strays:
            for stray in procs.kill_strays():
                record["notes"].append(f"killed a process left running after the trial: {stray}")
        self.store.write_trial(record)
        records[spec.trial_id] = record
        self.ran += 1
        progress, task = self._bar
        progress.console.print(format_line(record), soft_wrap=True)
        progress.advance(task, trial_estimate_s(spec))
        if self.on_record:
            self.on_record(record)

    @contextlib.contextmanager
    def _progress(self, pending: Sequence[TrialSpec]) -> Iterator[tuple[Progress, Any]]:
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[done]}"),
                            TextColumn("{task.description}"), BarColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=self.console, refresh_per_second=4, transient=False)
        total = sum(trial_estimate_s(t) for t in pending) or 1.0
        with progress:
            task = progress.add_task("starting", total=total, done="")
            yield progress, task


def format_line(record: Mapping[str, Any]) -> str:
    """One line of rich markup about a finished trial."""
    d = record.get("derived") or {}
    if record.get("status") != "ok":
        return f"[red]✗ {record['trial_id']}: {record.get('failure')}[/red]"
    flags = []
    if d.get("errors"):
        flags.append(f"[yellow]{d['errors']} errors[/yellow]")
    if d.get("client_saturated"):
        flags.append("[yellow]client saturated[/yellow]")
    return (f"[green]✓[/green] {record['trial_id']}: {_num(d.get('throughput_rps'))} rps, "
            f"p99 {_ms(d.get('p99_us'))}, server CPU {_num(d.get('server_cpu_percent'))}%, "
            f"{_num(d.get('cpu_us_per_request'), 1)} µs/req"
            + (" " + " ".join(flags) if flags else ""))


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "" if digits == 0 else "–"
    return f"{value:,.{digits}f}"


def _ms(us: Any) -> str:
    return "–" if us is None else f"{us / 1000:.2f} ms"


def finish_run(store: RunStore, status: str) -> dict[str, Any]:
    """Mark run.json complete or interrupted, with the load average after."""
    data = store.read_run()
    data["status"] = status
    data["finished_at"] = utc_now()
    data.setdefault("environment", {})["load_average_after"] = load_average()
    store.write_run(data)
    return data


class StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP set ``event`` (the current trial stops, its server too, and the
    run ends, keeping finished trials); a second signal raises KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, event: threading.Event, console: Console | None = None) -> None:
        self.event, self.console = event, console
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __enter__(self) -> StopOnSignal:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def ignore_further(self) -> None:
        """On leaving, ignore these signals instead of restoring the old handlers (the process
        is on its way out: a late Ctrl-C must not turn a clean exit into a traceback)."""
        self._previous = {sig: signal.SIG_IGN for sig in self._previous}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
