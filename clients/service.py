"""The swarm as a long-lived service: worker processes kept across runs, driven over a socket.

``python -m clients.service --connect PATH`` connects to the Unix socket PATH (the bench runner
listens there), says hello with the token in ``CONCBENCH_SWARM_TOKEN``, then serves one run at a
time. A run is what ``python -m clients swarm ARGS`` does, with the same argument parser, worker
code (``clients.worker``) and record (``clients.record.build_record``); only the worker
processes differ: they are started once and handed each run's plan and timeline, so a run pays
no interpreter start, no imports and no worker spawn (measured: 0.9 s of every trial on two busy
cores, before the service).

Messages are JSON objects, one per ``Connection.send_bytes``:

- runner -> service: ``{"op": "run", "args": [swarm arguments, --json PATH included]}``;
  ``{"op": "quit"}``.
- service -> runner: ``{"op": "hello", "token", "pid"}`` once its first workers are up; per
  run ``{"op": "started", "window_s": [start, end]}`` (the measured window on CLOCK_MONOTONIC,
  seconds) as the timeline goes out, ``{"op": "drained"}`` once every worker has stopped
  waiting for replies (the server is no longer measured), and ``{"op": "done", "status": the
  command's exit status, "error": str | null, "log": str}`` once the record is written.

The service ends on ``quit``, on the socket closing, when its parent goes, on SIGTERM/SIGINT, or
after ``IDLE_LIMIT_S`` without a message; its workers end with it (their pipes close, and the
kernel kills them should the service die: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime as dt
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clients._schedule import TIMER_SLACK_NS, set_timer_slack
from clients.config import SwarmConfig, SwarmError
from clients.plan import Timeline, WorkerPlan
from clients.record import EXIT_CANNOT_RUN, build_record, exit_status
from clients.swarm import (
    FINISH_MARGIN_S,
    START_DELAY_S,
    _Run,
    _timeline,
    await_workers,
    reap_workers,
    stop_process,
)
from clients.worker import make_worker
from clients.worker.phases import Stop
from clients.worker.process import PipeControl, request_stop
from protocol.launch import atomic_write_json, raise_fd_limit

TOKEN_ENV = "CONCBENCH_SWARM_TOKEN"
SERVICE_START_DELAY_S = 0.005  # warm workers wait on their pipe: a message reaches them in µs
IDLE_POLL_S = 0.5  # how often an idle service or worker looks at its parent
IDLE_LIMIT_S = 3600.0  # an idle service this long is forgotten: it exits
QUIT_GRACE_S = 2.0  # a worker told to quit must be gone within this
PR_SET_PDEATHSIG = 1

Notify = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------ the worker side


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent (the service) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def pooled_worker_main(pipe: Any) -> None:
    """Process entry of a pooled worker: say idle, then run each plan it is handed until told
    to quit, its pipe closes, its parent goes or it idles ``IDLE_LIMIT_S``."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    _die_with_parent()
    raise_fd_limit()
    set_timer_slack(TIMER_SLACK_NS)
    try:
        pipe.send(("idle",))
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < IDLE_LIMIT_S and os.getppid() == parent:
            if not pipe.poll(IDLE_POLL_S):
                continue
            message = pipe.recv()
            if message[0] == "quit":
                break
            if message[0] == "trial":
                _run_one(pipe, message[1], message[2])
            idle_since = time.monotonic()
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
    os._exit(0)  # nothing is buffered; skip the interpreter's slow teardown


def _run_one(pipe: Any, plan: WorkerPlan, timeline: Timeline) -> None:
    """One run's share: the worker's partial record, or the error, back to the service."""
    Stop.requested = False  # a stop asked for during an earlier run is over
    try:
        # the worker says when its drain is over, before it folds its figures: the runner may
        # stop the server then
        worker = make_worker(plan, timeline, None,
                             PipeControl(pipe, plan.index) if plan.steady else None,
                             drained=lambda: pipe.send(("drained", plan.index)))
        pipe.send(("result", plan.index, worker.run()))
    except Exception as error:  # reported, and the worker stays up for the next run
        pipe.send(("error", plan.index, f"{error!r}\n{traceback.format_exc()}"))


# ------------------------------------------------------------------------ the pool


class WorkerPool:
    """Worker processes started once (spawned, like the swarm's) and reused run after run."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[multiprocessing.connection.Connection] = []

    def ensure(self, count: int) -> None:
        """At least ``count`` workers, each idle and ready (SwarmError if one cannot start)."""
        started = []
        while len(self.processes) < count:
            parent_end, child_end = self.context.Pipe(duplex=True)
            process = self.context.Process(target=pooled_worker_main, args=(child_end,),
                                           name=f"swarm-worker-{len(self.processes)}",
                                           daemon=True)
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)
            started.append(len(self.processes) - 1)
        self._await_idle(started)

    def _await_idle(self, indices: list[int]) -> None:
        try:
            await_workers(self.pipes, self.processes, indices, "idle")
        except SwarmError:
            self.discard(indices)  # fresh ones: none has run a trial yet
            raise

    def take(self, count: int) -> tuple[list[Any], list[multiprocessing.connection.Connection]]:
        """The first ``count`` workers (started now if there are fewer)."""
        self.ensure(count)
        return self.processes[:count], self.pipes[:count]

    def discard(self, indices: set[int] | list[int]) -> None:
        """Stop these workers (they failed or hung) and forget them; the others stay."""
        doomed = set(indices)
        for i in sorted(doomed):
            stop_process(self.processes[i], grace_s=0.0)
            self.pipes[i].close()
        self.processes = [p for i, p in enumerate(self.processes) if i not in doomed]
        self.pipes = [p for i, p in enumerate(self.pipes) if i not in doomed]

    def close(self) -> None:
        """Every worker told to quit, then stopped if it lingers, and reaped."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit",))
        reap_workers(self.processes, self.pipes, QUIT_GRACE_S)
        self.processes, self.pipes = [], []


# ------------------------------------------------------------------------ one run


class _PooledRun(_Run):
    """``clients.swarm._Run`` on pooled workers: hand out plans, collect, keep the workers."""

    def __init__(self, config: SwarmConfig, pool: WorkerPool, notify: Notify) -> None:
        super().__init__(config, None)
        self.pool, self.notify = pool, notify
        self.drained: set[int] = set()

    stop_grace_s = FINISH_MARGIN_S

    def _launch(self) -> None:
        self.processes, self.pipes = self.pool.take(len(self.plans))
        self.timeline = self.make_timeline()
        for plan, pipe in zip(self.plans, self.pipes, strict=True):
            pipe.send(("trial", plan, self.timeline))
        if not self.config.steady:  # else once the gate has set the window
            self._window_decided()

    def _window_decided(self) -> None:
        assert self.timeline is not None
        self.notify({"op": "started", "window_s": [self.timeline.window_ns / 1e9,
                                                   self.timeline.end_ns / 1e9]})

    def _end(self) -> None:
        self._release()

    def make_timeline(self) -> Timeline:
        """The run's timeline, taken once the workers are idle and ready (a run across hosts
        is handed its timeline instead: bench/hosts/agent.py)."""
        return _soon(_timeline(self.config))

    def _handle(self, i: int, message: tuple[Any, ...], pending: set[int]) -> None:
        if message[0] == "drained":
            self.drained.add(i)
            if len(self.drained) == len(self.plans):
                self.notify({"op": "drained"})
            return
        super()._handle(i, message, pending)

    def _release(self) -> None:
        """Workers that failed or never reported are replaced next time; the rest stay."""
        broken = {i for i in range(len(self.pipes)) if i not in self.results}
        if self.interrupted:
            broken = set(range(len(self.pipes)))  # a stop request may still be pending in them
        if broken:
            self.pool.discard(broken)


def _soon(timeline: Timeline) -> Timeline:
    """The swarm's timeline, starting SERVICE_START_DELAY_S from now instead of the
    START_DELAY_S a freshly spawned worker needs (the rest of the formula is the swarm's)."""
    shift = int((START_DELAY_S - SERVICE_START_DELAY_S) * 1e9)
    return Timeline(*(value - shift for value in dataclasses.astuple(timeline)))


def config_from(args: Sequence[str]) -> tuple[SwarmConfig, str | None]:
    """The swarm command's arguments, parsed by its own parser, as a config and --json path.
    SwarmError (with argparse's message) for arguments it refuses."""
    from clients.__main__ import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            options = build_parser().parse_args(["swarm", *args])
    except SystemExit:
        raise SwarmError(errors.getvalue().strip() or "bad arguments") from None
    names = {item.name for item in dataclasses.fields(SwarmConfig)}
    config = SwarmConfig(**{name: getattr(options, name) for name in names
                            if hasattr(options, name)})
    return config, options.json


def run_once(args: Sequence[str], pool: WorkerPool, notify: Notify) -> dict[str, Any]:
    """One run as ``python -m clients swarm ARGS`` would do it, on the pool's workers; the
    reply for the runner (the record goes to --json)."""
    try:
        config, json_path = config_from(args)
        config.check()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        run = _PooledRun(config, pool, notify)
        run.execute()
        record = build_record(config, run, started_at)
    except SwarmError as error:
        return {"op": "done", "status": EXIT_CANNOT_RUN, "error": str(error),
                "log": f"swarm: {error}\n"}
    if json_path:
        atomic_write_json(Path(json_path), record)
    log = "".join(f"worker {i} failed: {why}\n" for i, why in sorted(run.failures.items()))
    reasons = record["client"]["reasons"]
    if reasons:
        log += "client saturated: " + "; ".join(reasons) + "\n"
    return {"op": "done", "status": exit_status(record), "error": None, "log": log}


# ------------------------------------------------------------------------ the service


def _send(conn: multiprocessing.connection.Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def serve(conn: multiprocessing.connection.Connection, pool: WorkerPool) -> None:
    """Answer run requests until quit, the socket closing, the parent going or idleness."""
    parent = os.getppid()
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < IDLE_LIMIT_S and os.getppid() == parent:
        if not conn.poll(IDLE_POLL_S):
            continue
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message.get("op") == "quit":
            return
        if message.get("op") == "run":
            _send(conn, run_once(list(message.get("args") or []), pool,
                                 lambda note: _send(conn, note)))
        idle_since = time.monotonic()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.service",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--connect", required=True, help="the runner's Unix socket")
    parser.add_argument("--workers", type=int, default=1, help="workers to start at once")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    _die_with_parent()
    raise_fd_limit()  # before any worker starts: they inherit it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(options.connect)
    conn = multiprocessing.connection.Connection(sock.detach())
    pool = WorkerPool()
    try:
        pool.ensure(max(1, options.workers))  # hello means ready: the workers are up
        _send(conn, {"op": "hello", "token": os.environ.get(TOKEN_ENV, ""), "pid": os.getpid()})
        serve(conn, pool)
    except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
        pass
    except SwarmError as error:
        print(f"swarm service: {error}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_RUN
    finally:
        pool.close()
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
