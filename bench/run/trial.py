"""One trial and its record.

``run_trial(spec, context)`` is one trial, usable on its own (the regression checker reuses
it): start the server through the launch contract on its CPUs, wait for READY, sample its whole
process tree every 100 ms, drive it with the swarm (bench/run/swarm_run.py, or the run's swarm
service), stop the server (SIGTERM, then SIGKILL), and return the trial record of
docs/results-format.md. ``Trial`` holds those phases apart so a run can overlap them
(bench/run/runner.py); ``base_record``, ``failed_record`` and ``derive`` build the record.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.analysis.validity import littles_law_ratio
from bench.environment import cpu_list
from bench.launch import LaunchedServer, LaunchFailed, LaunchInterrupted
from bench.load import ServiceError, ServiceInterrupted, ServiceTimeout
from bench.run.context import (
    TrialContext,
    TrialFailed,
    TrialInterrupted,
    TrialLogs,
    server_cpus,
    tail,
)
from bench.run.swarm_run import (
    SwarmRun,
    check_outcome,
    measured_window,
    read_swarm,
    run_swarm,
    swarm_arguments,
    swarm_budget_s,
    swarm_workers,
)
from bench.run.workloads import derived_figures
from bench.sampling import TreeSampler, held_connections, summarize_server
from bench.store import FORMAT, TrialSpec, utc_now

SERVICE_DONE_TIMEOUT_S = 10.0  # after the drain, the service folds and writes the record


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
        self.logs = TrialLogs(context.work_dir, spec.trial_id)
        self.t0, self.t0_wall = time.monotonic(), time.time()
        self.server: LaunchedServer | None = None  # or bench.hosts' RemoteServer
        self.sampler: TreeSampler | None = None  # or bench.hosts' RemoteSampler
        self.launch_failure: str | None = None
        self.run: SwarmRun | None = None
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
            self.run = run_swarm(self.spec, self.context, self.logs, address, self.t0)
        else:
            self.run = self._serve_load(address)
        self.crashed = not self.server.alive()

    def _serve_load(self, address: tuple[str, int]) -> SwarmRun:
        """The load from the swarm service: until it has drained (its record comes later)."""
        service, spec, t0 = self.context.swarm_service, self.spec, self.t0
        assert service is not None and self.sampler is not None
        workers = swarm_workers(spec, self.context.placement.swarm_workers())
        if spec.case.pause_s and not isinstance(self.server, LaunchedServer):
            raise TrialFailed("pausing the server needs it on this machine")
        start = time.monotonic()
        deadline = start + swarm_budget_s(spec, self.context)
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
            return SwarmRun(None, start - t0, time.monotonic() - t0, True)
        except ServiceError as error:
            raise TrialFailed(f"swarm service: {error}") from None
        return SwarmRun(None, start - t0, time.monotonic() - t0, False)

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
            self.record["pause"] = {"at_s": round(stopped_at - window[0], 4),
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
        swarm = read_swarm(self.logs.swarm_json) if self.run is not None else None
        if self.failure is None and self.run is not None:
            try:
                check_outcome(self.crashed, (self.record["server_exit"] or {}).get(
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


def _finish_record(record: dict[str, Any], spec: TrialSpec, logs: TrialLogs,
                   sampler: TreeSampler | None, run: SwarmRun | None,
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
