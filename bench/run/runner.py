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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from bench.environment import Placement, load_average
from bench.launch import (
    LaunchedServer,
    LaunchFailed,
    LaunchInterrupted,
    child_env,
    server_argv,
)
from bench.run.sampling import TreeSampler, summarize_server
from bench.run.scenario import trial_estimate_s
from bench.store import FORMAT, RunStore, TrialSpec, read_json, utc_now
from protocol import launch

POLL_S = 0.01
TAIL_CHARS = 3000
SWARM_START_ALLOWANCE_S = 10.0  # interpreter start, worker processes, connecting
SWARM_STOP_GRACE_S = 1.0
FD_MARGIN = 64  # descriptors a process needs besides its connections (as clients.swarm says)


class TrialFailed(Exception):
    """The trial cannot give a valid measurement; the message says why."""


class TrialInterrupted(Exception):
    """A stop was requested (Ctrl-C) while the trial ran; its processes are stopped."""


def default_swarm_command() -> list[str]:
    """How the swarm is started: the running interpreter, ``-m clients swarm``."""
    return [sys.executable, "-m", "clients", "swarm"]


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
    per_request = bool(requests and duration)
    rss_growth = None
    if server.get("rss_max") is not None and server.get("rss_idle") is not None:
        rss_growth = max(0, server["rss_max"] - server["rss_idle"])
    return {
        "throughput_rps": swarm.get("throughput_rps"),
        "p50_us": latency.get("p50"), "p90_us": latency.get("p90"),
        "p99_us": latency.get("p99"), "p99_9_us": latency.get("p99_9"),
        "max_us": latency.get("max"), "mean_us": latency.get("mean"),
        "cpu_us_per_request": (cpu_rate * duration / requests * 1e6
                               if per_request and cpu_rate is not None else None),
        "rss_per_connection_bytes": (rss_growth / connections
                                     if rss_growth is not None and connections else None),
        "ctx_switches_per_request": (ctx_rate * duration / requests
                                     if per_request and ctx_rate is not None else None),
        "error_rate": (errors / (requests + errors)
                       if errors is not None and requests is not None and requests + errors
                       else None),
        "errors": errors,
        "client_saturated": bool((swarm.get("client") or {}).get("saturated", False)),
        "server_cpu_percent": server.get("cpu_percent"),
        "requests": requests,
    }


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
    if case.idle_connections:
        args += ["--idle-connections", str(case.idle_connections)]
    if case.connect_rate:
        args += ["--connect-rate", f"{case.connect_rate:g}"]
    return [*args, *case.swarm_args]


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
    end_s: float
    timed_out: bool


def _run_swarm(spec: TrialSpec, context: TrialContext, logs: _Logs, address: tuple[str, int],
               t0: float) -> _SwarmRun:
    """Run the swarm to completion (bounded by a deadline); stop it whatever happens."""
    placement = context.placement
    workers = swarm_workers(spec, placement.swarm_workers())
    command = [*context.swarm_command,
               *swarm_arguments(spec, *address, workers, logs.swarm_json)]
    case = spec.case
    budget = (context.swarm_allowance_s + spec.ramp_s() + case.warmup_s + case.duration_s
              + 2 * case.timeout_s + spec.sockets * 0.002)
    start = time.monotonic()
    with logs.swarm_out.open("wb") as out, logs.swarm_err.open("wb") as err:
        swarm = procs.spawn(command, cpus=placement.swarm_cpus, cwd=context.swarm_root,
                            env=child_env(context.swarm_root), stdout=out, stderr=err)
    timed_out = False
    try:
        while True:
            try:
                swarm.wait(timeout=0.05)
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


def _check_outcome(server: LaunchedServer, run: _SwarmRun,
                   swarm: Mapping[str, Any] | None, spec: TrialSpec) -> None:
    """Raise TrialFailed when the figures cannot stand for the server under load."""
    if not server.alive():
        raise TrialFailed(f"server exited with status {server.proc.returncode} during the "
                          "trial")
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
        "server_cpus": _cpus(context.placement.server_cpus),
        "swarm_cpus": _cpus(context.placement.swarm_cpus),
        "status": "failed", "failure": None, "stderr_tail": None, "swarm_stderr_tail": None,
        "notes": [], "started_at": utc_now(), "wall_s": None,
        "swarm": None, "swarm_exit": None, "server": None, "server_exit": None, "derived": None,
    }


def _cpus(cpus: tuple[int, ...] | None) -> list[int] | None:
    return None if cpus is None else list(cpus)


def failed_record(spec: TrialSpec, context: TrialContext, failure: str) -> dict[str, Any]:
    """A record for a trial that could not even start (say, no base for a sweep point)."""
    record = base_record(spec, context)
    record.update(failure=failure, wall_s=0.0, derived=derive(None, None, spec.sockets))
    return record


def run_trial(spec: TrialSpec, context: TrialContext) -> dict[str, Any]:
    """Run one trial and return its record (status "ok" or "failed", never raising for a
    server's or swarm's fault). Raises TrialInterrupted, with everything stopped, when
    ``context.stop`` is set."""
    record = base_record(spec, context)
    logs = _Logs(context.work_dir, spec.trial_id)
    t0, t0_wall = time.monotonic(), time.time()
    server: LaunchedServer | None = None
    sampler: TreeSampler | None = None
    run: _SwarmRun | None = None
    swarm: dict[str, Any] | None = None
    try:
        server = LaunchedServer(server_command(spec), logs.server_out, logs.server_err,
                                cpus=context.placement.server_cpus, cwd=context.server_root,
                                env=child_env(context.server_root,
                                              dict(spec.server.interpreter_env)))
        try:
            address = server.wait_ready(spec.ready_timeout_s, context.stop)
        except LaunchFailed as error:
            raise TrialFailed(str(error)) from None
        except LaunchInterrupted:
            raise TrialInterrupted from None
        record["ready_s"] = round(time.monotonic() - t0, 4)
        sampler = TreeSampler(server.pid, t0)
        sampler.sample_now()
        sampler.start()
        run = _run_swarm(spec, context, logs, address, t0)
        swarm = _read_swarm(logs.swarm_json)
        _check_outcome(server, run, swarm, spec)
        record["status"] = "ok"
    except TrialFailed as failure:
        record["failure"] = str(failure)
        if run is not None and swarm is None:
            swarm = _read_swarm(logs.swarm_json)
    finally:
        if sampler is not None:
            sampler.stop()
        if server is not None:
            crashed = not server.alive()
            stopped = server.stop(spec.stop_timeout_s)
            record["server_exit"] = {"returncode": stopped.returncode, "killed": stopped.killed,
                                     "stop_s": round(stopped.seconds, 3), "crashed": crashed}
    _finish_record(record, spec, logs, sampler, run, swarm, t0, t0_wall)
    return record


def _finish_record(record: dict[str, Any], spec: TrialSpec, logs: _Logs,
                   sampler: TreeSampler | None, run: _SwarmRun | None,
                   swarm: dict[str, Any] | None, t0: float, t0_wall: float) -> None:
    """Server figures over the measured window, derived figures, notes and log tails."""
    record["swarm"] = swarm
    if run is not None:
        record["swarm_exit"] = {"returncode": run.returncode, "timed_out": run.timed_out,
                                "start_s": round(run.start_s, 4), "end_s": round(run.end_s, 4)}
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


def sweep_rate(spec: TrialSpec, records: Mapping[str, dict[str, Any]]
               ) -> tuple[float, str] | str:
    """The open-loop rate for a sweep point: ``offered_fraction`` of the model's closed-loop
    maximum from the base case (same repetition, else the median of the others). Returns
    (rate, base trial id), or a failure message."""
    base, fraction = spec.case.base, spec.case.fraction
    assert base is not None and fraction is not None
    same = f"{base}--{spec.model}--r{spec.repeat}"
    candidates = [same] + sorted(k for k in records if k.startswith(f"{base}--{spec.model}--r"))
    for trial_id in candidates:
        record = records.get(trial_id)
        if record and record.get("status") == "ok":
            rps = (record.get("derived") or {}).get("throughput_rps")
            if rps:
                return round(fraction * rps, 2), trial_id
    return (f"no closed-loop maximum for {spec.model}: base case {base} has no "
            "successful trial")


@dataclass
class RunResult:
    status: str  # "complete" | "interrupted"
    records: dict[str, dict[str, Any]]
    ran: int
    skipped: int


class Runner:
    """Runs a plan into a run folder (resuming: trials whose record exists are skipped)."""

    def __init__(self, store: RunStore, trials: Sequence[TrialSpec], context: TrialContext,
                 console: Console | None = None, kill_strays: bool = False,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store, self.trials, self.context = store, list(trials), context
        self.console = console or Console()
        self.kill_strays = kill_strays
        self.on_record = on_record

    def run(self) -> RunResult:
        records = self.store.load_trials()
        pending = [t for t in self.trials if t.trial_id not in records]
        skipped = len(self.trials) - len(pending)
        if skipped:
            self.console.print(f"resuming: {skipped} of {len(self.trials)} trials already done")
        ran = 0
        interrupted = False
        with self.context.placement.off_server_cpus(), self._progress(pending) as (progress, task):
            try:
                for index, spec in enumerate(pending):
                    if self.context.stop.is_set():
                        interrupted = True
                        break
                    progress.update(task, description=spec.trial_id,
                                    done=f"{index + skipped}/{len(self.trials)}")
                    record = self._one(spec, records)
                    self.store.write_trial(record)
                    records[spec.trial_id] = record
                    ran += 1
                    progress.console.print(format_line(record), soft_wrap=True)
                    progress.advance(task, trial_estimate_s(spec))
                    if self.on_record:
                        self.on_record(record)
                else:
                    progress.update(task, description="done",
                                    done=f"{len(self.trials)}/{len(self.trials)}")
            except TrialInterrupted:
                interrupted = True
            except KeyboardInterrupt:  # a second Ctrl-C: no more grace
                procs.kill_all()
                interrupted = True
        return RunResult("interrupted" if interrupted else "complete", records, ran, skipped)

    def _one(self, spec: TrialSpec, records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        base_trial = base_rps = None
        if spec.case.fraction is not None:
            found = sweep_rate(spec, records)
            if isinstance(found, str):
                return failed_record(spec, self.context, found)
            rate, base_trial = found
            base_rps = records[base_trial]["derived"]["throughput_rps"]
            spec = spec.with_rate(rate)
        record = run_trial(spec, self.context)
        if base_trial is not None:
            record.update(base_trial=base_trial, base_throughput_rps=base_rps)
        if self.kill_strays:
            for stray in procs.kill_strays():
                record["notes"].append(f"killed a process left running after the trial: {stray}")
        return record

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
