"""The load-generating swarm: worker processes driving one server, merged into one record.

``run_swarm(SwarmConfig(...))`` returns the JSON-ready result record (see ``RECORD_KEYS``);
``python -m clients swarm`` is the command-line face of the same function.

The parent resolves the target, splits the connections among ``workers`` processes (spawned:
nothing inherited), waits until every worker is ready, hands them one timeline on the shared
monotonic clock (connect, ramp, warm-up, window, drain), collects their partial records and
merges them: HdrHistograms through ``encode``/``decode_and_add``, counts, intervals, errors.

Workloads besides steady connections: churn (``requests_per_connection``: each connection
makes that many requests and is closed, a fresh one taking its place: the record's ``churn``),
slowloris (``slowloris`` extra connections, opened first, that send part of a frame and then
one byte every ``slowloris_interval`` seconds for the whole run: ``slowloris``), and, for any
mix of several kinds, each kind's latency on its own (``latency_by_kind``: head-of-line
blocking shows as the cheap kind's tail).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from clients import _steady as steady
from clients._measure import mean_value, new_histogram
from clients.mix import DEFAULT_MIX
from clients.plan import Timeline, WorkerPlan
from clients.wire import DEFAULT_PROTOCOL, WIRES, Wire, wire_for
from clients.worker.process import worker_main
from protocol.launch import raise_fd_limit

RECORD_VERSION = 1
START_DELAY_S = 0.05  # between "everyone is ready" and the first connect
READY_TIMEOUT_S = 60.0  # a worker must be up and ready within this
FINISH_MARGIN_S = 5.0  # a worker must report within this after its timeline ends
STOP_GRACE_S = 3.0  # after a stop request, before a worker is terminated
FD_MARGIN = 64  # descriptors a worker needs besides its sockets (epoll, pipes, the interpreter)
CPU_SATURATED = 90.0  # a worker's core at or above this percent: the client is the bottleneck
LAG_SATURATED_US = 1000.0  # open loop: the client's own mean lateness above this is saturation
# open loop: the client's own lateness at p99 or p99.9 at least this share of the corrected
# latency's means that tail is the client's pauses, not the server (``client.lag_is_tail``)
LAG_TAIL_SHARE = 0.5
LAG_TAIL_SAMPLES = 10  # a percentile is judged only with this many requests beyond it
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}
# slowloris: a slow connection sends its wire's ``slow_frame`` (an ECHO declaring 4,096 payload
# bytes, never finished), this much of it at once (concbench: the header's length and op)
SLOWLORIS_FIRST_BYTES = 5
# an idle connection asks this once when it opens, and holds still once it is answered: the
# answer shows the server accepted it and watches it (an unaccepted one waits in the listen
# queue and costs the server nothing), as in the dead-connection tests of select and epoll
IDLE_HELLO = "echo:1"

# exit statuses of ``python -m clients swarm`` (and ``exit_status``)
EXIT_OK = 0  # ran to the end, no errors
EXIT_ERRORS = 1  # ran, but with errors, cut short or interrupted: figures are partial
EXIT_CANNOT_RUN = 2  # bad arguments, unreachable target, workers not started, no connection

RECORD_KEYS = (
    "version", "tool", "started_at", "target", "mode", "connections",
    "connections_established", "workers", "pipeline", "rate", "arrivals", "mix", "warmup_s",
    "duration_planned_s", "duration_s", "timeout_s", "verify", "interval_s", "requests",
    "throughput_rps", "errors", "errors_total", "error_rate", "latency_us",
    "latency_uncorrected_us", "latency_corrected", "connect_us", "schedule_lag_us",
    "histogram", "histogram_uncorrected", "histogram_unit", "intervals", "fairness",
    "per_connection", "client", "totals", "window", "complete", "stopped",
    "idle_connections", "idle", "churn", "slowloris", "latency_by_kind", "protocol", "steady",
)



def await_workers(pipes: Sequence[Any], processes: Sequence[Any], indices: Iterable[int],
                  expected: str) -> None:
    """Wait until each worker in ``indices`` says ``(expected, ...)`` on its pipe; a
    ``SwarmError`` naming the first that fails, exits or is not ready in ``READY_TIMEOUT_S``."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = set(indices)
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SwarmError(f"{len(waiting)} worker(s) not ready within "
                             f"{READY_TIMEOUT_S:.0f} s")
        ready = multiprocessing.connection.wait(
            [pipes[i] for i in waiting] + [processes[i].sentinel for i in waiting], remaining)
        for i in sorted(waiting):
            if pipes[i] in ready:
                try:
                    message = pipes[i].recv()
                except (EOFError, OSError):
                    message = ("error", i, "it exited while starting (run_swarm spawns its "
                               "workers: a script calling it needs the "
                               "`if __name__ == '__main__':` guard)")
                if message[0] != expected:
                    raise SwarmError(f"worker {i} failed to start: {message[-1]}")
                waiting.discard(i)
            elif processes[i].sentinel in ready:
                raise SwarmError(f"worker {i} exited while starting "
                                 f"(status {processes[i].exitcode})")

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
            (self.protocol not in WIRES,
             f"--protocol {self.protocol!r}: known protocols are {', '.join(WIRES)}"),
        ]
        for failed, message in problems:
            if failed:
                raise SwarmError(message)
        try:
            self.wire.parse_mix(self.mix)
        except ValueError as error:
            raise SwarmError(f"--mix: {error}") from None
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


def _plans(config: SwarmConfig) -> list[WorkerPlan]:
    """Split the connections (and the open-loop rate, and the connect rate) among workers."""
    family, address = resolve(config.target)
    wire = config.wire
    entries = wire.parse_mix(config.mix)
    kinds = tuple(wire.build_kind(entry, payload_seed=index, verify=config.verify)
                  for index, entry in enumerate(entries))
    weights = tuple(entry.weight for entry in entries)
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "big")
    plans = []
    first = 0
    slow_frame = wire.slow_frame
    hello = wire.build_kind(wire.parse_mix(IDLE_HELLO)[0])
    for index in range(config.workers):
        count = _share(config.connections, config.workers, index)
        idle = _share(config.idle_connections, config.workers, index)
        slow = _share(config.slowloris, config.workers, index)
        share = count / config.connections
        plans.append(WorkerPlan(
            index=index, family=family, address=address, connections=count,
            first_connection=first, mode=config.mode, pipeline=config.pipeline,
            rate=(config.rate or 0.0) * share if config.mode == "open" else 0.0,
            arrivals=config.arrivals, kinds=kinds, weights=weights,
            connect_rate=config.connect_rate * (count + idle + slow) / config.sockets,
            timeout_ns=_timeout_ns(config), interval_ns=int(config.interval * 1e9),
            seed=seed + index, idle=idle,
            requests_per_connection=config.requests_per_connection, slow=slow,
            slow_first=SLOWLORIS_FIRST_BYTES,
            slow_interval_ns=int(config.slowloris_interval * 1e9), slow_frame=slow_frame,
            idle_frame=hello.frame, idle_reply=bytes(hello.check)[:hello.reply_length],
            protocol=config.protocol, steady=config.steady))
        first += count + idle + slow
    return plans


def _share(total: int, workers: int, index: int) -> int:
    """Worker ``index``'s part of ``total`` connections (the first ones take the remainder)."""
    return total // workers + (index < total % workers)


def _timeline(config: SwarmConfig) -> Timeline:
    """The run's timeline; with ``steady`` its longest (the parent decides the window during
    the warm-up, ``_Run._decide``: workers fall back on this one only if they never hear)."""
    start = time.monotonic_ns() + int(START_DELAY_S * 1e9)
    ramp = config.sockets / config.connect_rate if config.connect_rate > 0 else 0.0
    load = start + int(ramp * 1e9)
    if config.steady:
        window = load + int((config.warmup + steady.FALLBACK_S) * 1e9)
        end = window + int(max(config.duration, config.max_duration) * 1e9)
    else:
        window = load + int(config.warmup * 1e9)
        end = window + int(config.duration * 1e9)
    return Timeline(start, load, window, end, end + _timeout_ns(config))


def _timeout_ns(config: SwarmConfig) -> int:
    """How long a reply may take: ``timeout`` beyond the longest SLEEP the mix asks for."""
    wire = config.wire
    longest_sleep_us = max((wire.wait_us(entry) for entry in wire.parse_mix(config.mix)),
                           default=0)
    return int(config.timeout * 1e9) + longest_sleep_us * 1000


ProgressCallback = Callable[[dict[str, Any]], None]


class _Run:
    """The parent's side of one run: start workers, hand out the timeline, collect."""

    def __init__(self, config: SwarmConfig, progress: ProgressCallback | None) -> None:
        self.config = config
        self.progress = progress
        self.plans = _plans(config)
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.failures: dict[int, str] = {}
        self.interrupted = False
        self.timeline: Timeline | None = None
        self.live: dict[int, list[int]] = {}  # interval index -> [replies, errors, workers]
        self.gate = steady.SteadyGate(len(self.plans),
                                      config.connections + config.idle_connections,
                                      config.sockets,
                                      config.rate if config.mode == "open" else None
                                      ) if config.steady else None
        self.steady: dict[str, Any] | None = None  # the gate's decision, for the record

    stop_grace_s = STOP_GRACE_S  # after Ctrl-C, how long the workers have to report

    def execute(self) -> None:
        """Launch (``_launch``: workers and the timeline), collect until the drain ends or
        Ctrl-C, then ``_end`` (the workers reaped), whatever happens."""
        try:
            self._launch()
            assert self.timeline is not None
            self._collect(self.timeline.drain_ns / 1e9 + FINISH_MARGIN_S)
        except KeyboardInterrupt:
            self.interrupted = True
            self._signal_workers(signal.SIGINT)
            with contextlib.suppress(KeyboardInterrupt):
                self._collect(time.monotonic() + self.stop_grace_s)
        finally:
            self._end()

    def _launch(self) -> None:
        self._start_workers()
        self._await_ready()
        self.timeline = _timeline(self.config)
        for pipe in self.pipes:
            pipe.send(("start", self.timeline))

    def _end(self) -> None:
        """Every worker ends and is reaped, whatever happened."""
        reap_workers(self.processes, self.pipes, STOP_GRACE_S)

    def _start_workers(self) -> None:
        for plan in self.plans:
            parent_end, child_end = self.context.Pipe(duplex=True)
            process = self.context.Process(target=worker_main, args=(plan, child_end),
                                           name=f"swarm-worker-{plan.index}", daemon=True)
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)

    def _await_ready(self) -> None:
        await_workers(self.pipes, self.processes, range(len(self.pipes)), "ready")

    def _collect(self, deadline: float) -> None:
        """Take messages until every worker has reported or ``deadline`` (monotonic s)."""
        pending = {i for i in range(len(self.pipes))
                   if i not in self.results and i not in self.failures}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for i in pending:
                    self.failures[i] = "did not report in time"
                return
            wake = 0.5 if self.steady is not None or self.gate is None else steady.SLICE_S
            ready = multiprocessing.connection.wait([self.pipes[i] for i in pending],
                                                    min(remaining, wake))
            if self.gate is not None and self.steady is None:
                self._decide()
            for i in list(pending):
                if self.pipes[i] not in ready:
                    continue
                try:
                    message = self.pipes[i].recv()
                except (EOFError, OSError):
                    self.failures[i] = f"exited without a result (status " \
                                       f"{self.processes[i].exitcode})"
                    pending.discard(i)
                    continue
                self._handle(i, message, pending)

    def _handle(self, i: int, message: tuple[Any, ...], pending: set[int]) -> None:
        if message[0] == "warm":
            if self.gate is not None and self.steady is None:
                self.gate.add(*message[2:])
                self._decide()
        elif message[0] == "interval":
            _, _, index, count, errors = message
            entry = self.live.setdefault(index, [0, 0, 0])
            entry[0] += count
            entry[1] += errors
            entry[2] += 1
            if entry[2] == len(self.plans) and self.progress is not None:
                self.progress({"interval": index, "requests": entry[0], "errors": entry[1],
                               "interval_s": self.config.interval})
        elif message[0] == "result":
            self.results[i] = message[2]
            pending.discard(i)
        else:
            self.failures[i] = str(message[-1])
            pending.discard(i)

    def _decide(self) -> None:
        """Open the window when the load is steady, or when the warm-up cap has run out (the
        record then says it never got steady): every worker is told the same timeline."""
        assert self.gate is not None and self.timeline is not None
        now = time.monotonic_ns()
        warmed = (now - self.timeline.load_ns) / 1e9
        reason = self.gate.reason()
        if reason is not None and warmed < self.config.warmup:
            return
        config = self.config
        duration = steady.window_length_s(self.gate.settled_rate(), config.min_requests,
                                          config.duration, config.max_duration) \
            if reason is None else config.duration
        window = now + int(steady.WINDOW_LEAD_S * 1e9)
        end = window + int(duration * 1e9)
        self.timeline = dataclasses.replace(self.timeline, window_ns=window, end_ns=end,
                                            drain_ns=end + _timeout_ns(config))
        if reason is not None:
            reason = f"{reason} after {warmed:.2f} s (the warm-up cap)"
        self.steady = {**self.gate.record(reason is None, (window - self.timeline.load_ns) / 1e9,
                                          config.warmup, reason),
                       "min_requests": config.min_requests, "window_planned_s": round(duration, 3)}
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("window", window, end, self.timeline.drain_ns))
        self._window_decided()

    def _window_decided(self) -> None:
        """The steady-state gate has set the window (``self.timeline``): a hook."""

    def _signal_workers(self, signum: int) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)


def reap_workers(processes: Sequence[Any], pipes: Sequence[Any], grace_s: float) -> None:
    """Workers given ``grace_s`` together to exit, then stopped one by one; pipes closed."""
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        stop_process(process, grace_s=0.0)
    for pipe in pipes:
        pipe.close()


def stop_process(process: multiprocessing.process.BaseProcess, grace_s: float) -> None:
    """A worker process ended: given ``grace_s`` to exit, then SIGTERM, then SIGKILL; reaped."""
    process.join(grace_s)
    if process.is_alive():
        process.terminate()
        process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join(1.0)


def run_swarm(config: SwarmConfig, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run the swarm and return its record (``RECORD_KEYS``).

    Raises ``SwarmError`` when it cannot run at all. A run that started always returns a
    record, partial if the server died or stopped answering, a worker failed or the run was
    interrupted (Ctrl-C): ``complete`` is then false and ``stopped`` says why.
    ``progress``, if given, is called once per interval with the merged live figures.
    """
    config.check()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run = _Run(config, progress)
    run.execute()
    return build_record(config, run, started_at)


# ------------------------------------------------------------------------ merging


def _merge(encoded: list[str | None]) -> HdrHistogram:
    histogram = new_histogram()
    for item in encoded:
        if item:
            histogram.decode_and_add(item)
    return histogram


def latency_summary(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50 … p99.99, max and mean in microseconds (None without samples)."""
    if histogram.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES), "max": None, "mean": None}
    summary: dict[str, float | None] = {
        name: float(histogram.get_value_at_percentile(pct)) for name, pct in PERCENTILES.items()}
    summary["max"] = float(histogram.get_max_value())
    summary["mean"] = round(mean_value(histogram), 1)  # hdrh's get_mean_value, vectorised
    return summary


def jain_index(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when every value is equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return None
    return total * total / (len(values) * squares)


def _fairness(per_connection: list[int], duration: float) -> dict[str, Any]:
    rates = [count / duration for count in per_connection] if duration > 0 else []
    index = jain_index(rates)
    return {
        "jain": round(index, 4) if index is not None else None,
        "min_rps": round(min(rates), 1) if rates else None,
        "max_rps": round(max(rates), 1) if rates else None,
        "mean_rps": round(sum(rates) / len(rates), 1) if rates else None,
        "connections": len(per_connection),
        "starved": sum(1 for count in per_connection if count == 0),
    }


def _intervals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_index: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        for item in result["intervals"]:
            by_index.setdefault(item["index"], []).append(item)
    merged = []
    for index in sorted(by_index):
        items = by_index[index]
        histogram = _merge([item["histogram"] for item in items])
        requests = sum(item["requests"] for item in items)
        seconds = max(item["duration_ns"] for item in items) / 1e9
        lag_count = sum(item["lag_count"] for item in items)
        lag = _merge([item.get("lag_histogram") for item in items])
        has = histogram.get_total_count() > 0
        merged.append({
            "t_s": round(sum(merged_item["duration_s"] for merged_item in merged), 3),
            "duration_s": round(seconds, 3),
            "requests": requests,
            "throughput_rps": round(requests / seconds, 1) if seconds > 0 else None,
            "p50_us": float(histogram.get_value_at_percentile(50)) if has else None,
            "p99_us": float(histogram.get_value_at_percentile(99)) if has else None,
            "errors": sum(item["errors"] for item in items),
            "client_lag_mean_us": round(sum(item["lag_sum_ns"] for item in items)
                                        / lag_count / 1000, 1) if lag_count else None,
            "client_lag_max_us": round(max(item["lag_max_ns"] for item in items) / 1000, 1)
            if lag_count else None,
            "client_lag_p99_us": float(lag.get_value_at_percentile(99))
            if lag.get_total_count() else None,
        })
    return merged


def _client_lag(intervals: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Open loop: how late the client itself sent requests it had a free connection for.

    Returns the summary and, if the lateness shows the client cannot keep the schedule (mean
    over LAG_SATURATED_US, or growing: the last half of the intervals more than twice the
    first half plus half that threshold), the reason to call it saturated.
    """
    lags = [item["client_lag_mean_us"] for item in intervals
            if item["client_lag_mean_us"] is not None]
    maxima = [item["client_lag_max_us"] for item in intervals
              if item["client_lag_max_us"] is not None]
    if not lags:
        return {"mean": None, "max": None, "first_half_mean": None, "last_half_mean": None}, None
    half = max(1, len(lags) // 2)
    first = sum(lags[:half]) / half
    last = sum(lags[-half:]) / half
    mean = sum(lags) / len(lags)
    summary = {"mean": round(mean, 1), "max": max(maxima), "first_half_mean": round(first, 1),
               "last_half_mean": round(last, 1)}
    if mean > LAG_SATURATED_US:
        return summary, (f"open loop: requests leave {mean:,.0f} µs late on average (over "
                         f"{LAG_SATURATED_US:,.0f} µs): the client cannot keep the schedule")
    if len(lags) >= 2 and last > 2 * first + LAG_SATURATED_US / 2:
        return summary, (f"open loop: the client's lateness grows from {first:,.0f} to "
                         f"{last:,.0f} µs: it cannot keep the rate")
    return summary, None


def lag_tail(latency: dict[str, float | None], own_lag: dict[str, float | None],
             requests: int) -> dict[str, Any]:
    """Open loop: is the corrected tail the client's own lateness? ``flagged`` when the lag's
    p99 or p99.9 is at least LAG_TAIL_SHARE of the corrected latency's (each judged only over
    enough ``requests``: p99.9 of 4,000 is four samples); the figures, and why."""
    figures: dict[str, Any] = {"flagged": False, "threshold_share": LAG_TAIL_SHARE,
                               "requests": requests}
    reasons = []
    for name, label, beyond in (("p99", "p99", 0.01), ("p99_9", "p99.9", 0.001)):
        lag, total = own_lag.get(name), latency.get(name)
        share = round(lag / total, 3) if lag is not None and total else None
        figures.update({f"lag_{name}_us": lag, f"latency_{name}_us": total,
                        f"share_{name}": share})
        if share is not None and share >= LAG_TAIL_SHARE and \
                requests * beyond >= LAG_TAIL_SAMPLES:
            reasons.append(f"{label} {lag:,.0f} of {total:,.0f} µs ({share:.0%})")
    if reasons:
        figures["flagged"] = True
        figures["reason"] = ("open loop: the client's own send lateness is the latency tail: "
                             + ", ".join(reasons) + ": that share is the client's pauses, not "
                             "the server's latency")
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpu_reasons(cpu: list[float | None], waits: list[float | None]) -> list[str]:
    """Why a worker's core counts as saturated: busy >= 90% of the window, or busy plus
    runnable-but-waiting-for-a-CPU >= 90% (an oversubscribed machine starves the client)."""
    reasons = []
    for i, (busy, wait) in enumerate(zip(cpu, waits, strict=True)):
        if busy is None:
            continue
        if busy >= CPU_SATURATED:
            reasons.append(f"worker {i} at {busy:.0f}% CPU")
        elif wait is not None and busy + wait >= CPU_SATURATED:
            reasons.append(f"worker {i} busy {busy:.0f}% and waiting for a CPU {wait:.0f}% of "
                           f"the window: its core is oversubscribed")
    return reasons


def build_record(config: SwarmConfig, run: _Run, started_at: str) -> dict[str, Any]:
    """Merge the workers' partial records into the run's record."""
    results = [run.results[i] for i in sorted(run.results)]
    timeline = run.timeline
    starts = [r["window_start_ns"] for r in results if r["window_start_ns"] is not None]
    ends = [r["window_end_ns"] for r in results if r["window_end_ns"] is not None]
    duration = (max(ends) - min(starts)) / 1e9 if starts and ends else 0.0
    per_connection = [count for r in results for count in r["per_connection"]]
    requests = sum(r["requests"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    if run.failures:
        errors["worker_failed"] = len(run.failures)
    errors_total = sum(errors.values())
    open_loop = config.mode == "open"
    histogram = _merge([r["histogram"] for r in results])
    uncorrected = _merge([r["histogram_uncorrected"] for r in results]) if open_loop else None
    lag = _merge([r["histogram_lag"] for r in results]) if open_loop else None
    own_lag = _merge([r.get("histogram_own_lag") for r in results]) if open_loop else None
    intervals = _intervals(results)
    cpu = [round(r["cpu"].get("percent", 0.0), 1) if r["cpu"] else None for r in results]
    waits = [_round(r["cpu"].get("wait_percent")) if r["cpu"] else None for r in results]
    spins = [_round(r["cpu"].get("spin_percent")) if r["cpu"] else None for r in results]
    reasons = _cpu_reasons(cpu, waits)
    lag_summary, lag_reason = _client_lag(intervals)
    if lag_reason:
        reasons.append(lag_reason)
    latency = latency_summary(histogram)
    tail = lag_tail(latency, latency_summary(own_lag), min(
        requests, own_lag.get_total_count())) if own_lag is not None else None
    cpu_seconds = sum(r["cpu"]["user_s"] + r["cpu"]["system_s"] - r["cpu"].get("spin_s", 0.0)
                      for r in results if r["cpu"])  # spinning until a send is due is no work
    stopped = "interrupted" if run.interrupted else next(
        (r["stopped"] for r in results if r["stopped"]), None)
    if run.failures and stopped is None:
        stopped = "worker failed"
    established = sum(r["established"] for r in results)
    idle = _idle(config, results)
    slowloris = _slowloris(config, results)
    answered = requests + sum(r["error_responses"] for r in results)
    return {
        "version": RECORD_VERSION,
        "tool": "concbench clients.swarm",
        "started_at": started_at,
        "target": config.target,
        "mode": config.mode,
        "connections": config.connections,
        "connections_established": established,
        "workers": config.workers,
        "pipeline": config.pipeline,
        "rate": config.rate if open_loop else None,
        "arrivals": config.arrivals if open_loop else None,
        "protocol": config.protocol,
        "mix": config.wire.format_mix(config.wire.parse_mix(config.mix)),
        "warmup_s": config.warmup,
        "duration_planned_s": config.duration,
        "duration_s": round(duration, 4),
        "timeout_s": config.timeout,
        "verify": config.verify,
        "interval_s": config.interval,
        "requests": requests,
        "throughput_rps": round(requests / duration, 1) if duration > 0 else 0.0,
        "errors": errors,
        "errors_total": errors_total,
        "error_rate": round(errors_total / (answered + errors_total), 6)
        if answered + errors_total else None,
        "latency_us": latency,
        "latency_uncorrected_us": latency_summary(uncorrected) if uncorrected else latency,
        "latency_corrected": open_loop,
        "connect_us": {**latency_summary(_merge([r["connect_histogram"] for r in results])),
                       "count": established + idle["established"]
                       + (slowloris["established"] if slowloris else 0)},
        "schedule_lag_us": latency_summary(lag) if lag else None,
        "histogram": histogram.encode().decode("ascii"),
        "histogram_uncorrected": uncorrected.encode().decode("ascii") if uncorrected else None,
        "histogram_unit": "us",
        "intervals": intervals,
        "fairness": _fairness(per_connection, duration),
        "per_connection": per_connection,
        "client": {"cpu_percent": cpu, "cpu_wait_percent": waits, "cpu_spin_percent": spins,
                   "saturated": bool(reasons), "reasons": reasons,
                   "cpu_threshold_percent": CPU_SATURATED,
                   "cpu_us_per_reply": round(cpu_seconds / requests * 1e6, 2)
                   if requests else None,
                   "lag_us": {**lag_summary, **latency_summary(own_lag)} if own_lag else None,
                   "lag_is_tail": bool(tail and tail["flagged"]), "lag_tail": tail,
                   "worker_failures": {str(i): why for i, why in sorted(run.failures.items())}},
        "totals": {
            "sent": sum(r["sent_total"] for r in results),
            "answered_ok": sum(r["ok_total"] for r in results),
            "answered_error": sum(r["error_responses"] for r in results),
            "lost_in_flight": sum(r["lost"] for r in results),
        },
        "window": _window(timeline, starts, ends),
        "complete": stopped is None and not run.failures and bool(ends)
        and (timeline is None or max(ends) >= timeline.end_ns),
        "stopped": stopped,
        "idle_connections": config.idle_connections,
        "idle": idle,
        "churn": _churn(config, results, duration),
        "slowloris": slowloris,
        "latency_by_kind": _by_kind(config, results),
        "steady": run.steady or {"checked": False},
    }


def _churn(config: SwarmConfig, results: list[dict[str, Any]], duration: float
           ) -> dict[str, Any] | None:
    """Churn: connections that made their requests and closed in the window, per second, and
    the window's connect and cycle (connect to last reply) times; None without churn."""
    if not config.requests_per_connection:
        return None
    parts = [r["churn"] for r in results if r.get("churn")]
    completed = sum(part["cycles"] for part in parts)
    connect = _merge([part["connect_histogram"] for part in parts])
    cycle = _merge([part["cycle_histogram"] for part in parts])
    return {"requests_per_connection": config.requests_per_connection,
            "connections_completed": completed,
            "connections_per_s": round(completed / duration, 1) if duration > 0 else 0.0,
            "connect_us": {**latency_summary(connect), "count": connect.get_total_count()},
            "cycle_us": latency_summary(cycle),
            "connect_histogram": connect.encode().decode("ascii"),
            "cycle_histogram": cycle.encode().decode("ascii")}


def _slowloris(config: SwarmConfig, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The slow connections: how many were held, still open when the window ended, the
    bytes they sent and their errors (kept out of ``errors``); None without any."""
    if not config.slowloris:
        return None
    parts = [r.get("slowloris") or {} for r in results]
    held = _held(parts)
    return {"connections": config.slowloris, "interval_s": config.slowloris_interval,
            "first_bytes": SLOWLORIS_FIRST_BYTES, "established": held["established"],
            "alive_at_end": held["alive_at_end"],
            "bytes_sent": sum(part.get("bytes_sent", 0) for part in parts),
            "errors": held["errors"], "errors_total": sum(held["errors"].values())}


def _by_kind(config: SwarmConfig, results: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A mix of several kinds: each kind's replies and latency (corrected in open loop), in
    the mix's order; None for a uniform mix."""
    wire = config.wire
    entries = wire.parse_mix(config.mix)
    if len(entries) < 2:
        return None
    encoded = [r.get("histograms_by_kind") or [] for r in results]
    kinds = []
    for index, entry in enumerate(entries):
        histogram = _merge([part[index] for part in encoded if index < len(part)])
        kinds.append({"kind": wire.describe(entry), "weight": entry.weight,
                      "requests": histogram.get_total_count(),
                      "latency_us": latency_summary(histogram),
                      "histogram": histogram.encode().decode("ascii")})
    return kinds


def _idle(config: SwarmConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The idle connections: how many were held, still open when the window ended, and the
    errors among them (also counted in ``errors``)."""
    return {"connections": config.idle_connections,
            **_held([r.get("idle") or {} for r in results])}


def _held(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Idle or slow connections over the workers: established, still open when the window
    ended (None if a worker could not say), and their errors by kind."""
    alive = [part.get("alive_at_end") for part in parts]
    errors: dict[str, int] = {}
    for part in parts:
        for kind, count in (part.get("errors") or {}).items():
            errors[kind] = errors.get(kind, 0) + count
    return {"established": sum(part.get("established", 0) for part in parts),
            "answered": sum(part.get("answered", 0) for part in parts),
            "alive_at_end": sum(alive) if alive and None not in alive else None,
            "errors": errors}


def _window(timeline: Timeline | None, starts: list[int], ends: list[int]) -> dict[str, Any]:
    """The measured window on the monotonic clock and as wall-clock time (Unix seconds)."""
    if timeline is None or not starts or not ends:
        return {"monotonic_start_s": None, "monotonic_end_s": None,
                "unix_start_s": None, "unix_end_s": None}
    offset = time.time() - time.monotonic()
    start, end = min(starts) / 1e9, max(ends) / 1e9
    return {"monotonic_start_s": round(start, 6), "monotonic_end_s": round(end, 6),
            "unix_start_s": round(start + offset, 6), "unix_end_s": round(end + offset, 6)}


def exit_status(record: dict[str, Any]) -> int:
    """0: complete without errors; 1: ran, with errors or cut short; 2: nothing could run."""
    if record["connections_established"] == 0:
        return EXIT_CANNOT_RUN
    if record["errors_total"] or not record["complete"]:
        return EXIT_ERRORS
    return EXIT_OK

