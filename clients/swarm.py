"""The load-generating swarm: worker processes driving one server, merged into one record.

``run_swarm(SwarmConfig(...))`` returns the JSON-ready result record (``clients.record``);
``python -m clients swarm`` is the command-line face of the same function.

The parent checks the config (``clients.config``), resolves the target, splits the connections
among ``workers`` processes (spawned: nothing inherited; each runs ``clients.worker``), waits
until every worker is ready, hands them one timeline on the shared monotonic clock (connect,
ramp, warm-up, window, drain), collects their partial records and merges them
(``clients.record.build_record``).

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
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clients import _steady as steady
from clients.config import SLOWLORIS_FIRST_BYTES, SwarmConfig, SwarmError, resolve
from clients.plan import Timeline, WorkerPlan
from clients.record import build_record
from clients.worker.process import worker_main

START_DELAY_S = 0.05  # between "everyone is ready" and the first connect
READY_TIMEOUT_S = 60.0  # a worker must be up and ready within this
FINISH_MARGIN_S = 5.0  # a worker must report within this after its timeline ends
STOP_GRACE_S = 3.0  # after a stop request, before a worker is terminated
# an idle connection asks this once when it opens, and holds still once it is answered: the
# answer shows the server accepted it and watches it (an unaccepted one waits in the listen
# queue and costs the server nothing), as in the dead-connection tests of select and epoll
IDLE_HELLO = "echo:1"


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
        dedicated = _share(config.dedicated, config.workers, index)
        share = count / config.connections
        plans.append(WorkerPlan(
            index=index, family=family, address=address, connections=count,
            first_connection=first, mode=config.mode, pipeline=config.pipeline,
            rate=(config.rate or 0.0) * share if config.mode == "open" else 0.0,
            arrivals=config.arrivals, kinds=kinds, weights=weights,
            connect_rate=config.connect_rate * (count + idle + slow) / config.sockets,
            timeout_ns=_timeout_ns(config), interval_ns=int(config.interval * 1e9),
            seed=seed + index, idle=idle, dedicated=dedicated,
            requests_per_connection=config.requests_per_connection, slowloris=slow,
            slowloris_first=SLOWLORIS_FIRST_BYTES,
            slowloris_interval_ns=int(config.slowloris_interval * 1e9),
            slowloris_frame=slow_frame,
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
