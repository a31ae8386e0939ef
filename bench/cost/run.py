"""One model's probe (a server under one tool, every case), and the parallel driver over models.

A *job* is one server run: a model from one tree (the working tree, or the gate's base
worktree) under callgrind or strace. Per case the deterministic client connects, warms up,
then sends two windows of requests; the meter (``CallgrindMeter`` or ``StraceMeter``) counts
each. Jobs are independent and their counts do not depend on timing, so they run in parallel
over the CPUs (``--jobs``); only the deadlines know about valgrind's slowdown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import REPO_ROOT, procs
from bench.cost.cases import CostCase
from bench.cost.client import ClientError, Driver
from bench.cost.probe import SLOWDOWN, CallgrindMeter, ProbeError, valgrind_argv
from bench.cost.syscalls import StraceMeter
from bench.launch import LaunchedServer, LaunchFailed, child_env, server_argv

# native deadlines, each multiplied by probe.SLOWDOWN under callgrind (200 s, 80 s, 120 s)
READY_S = 5.0  # a cold start that compiles bytecode takes ~0.5 s natively
REPLY_S = 2.0  # the slowest reply, WORK 2000, takes ~2 ms natively
STOP_S = 3.0  # the contract's 2 s, and a margin
IDLE_POLLS = 3  # consecutive looks at a tree with every thread asleep
IDLE_POLL_S = 0.02
TOOLS = ("instructions", "syscalls")

Counts = dict[str, int]
Progress = Callable[[str], None]


class Meter(Protocol):
    name: str

    def start(self, pids: list[int], *, continued: bool = False) -> None: ...

    def stop(self) -> Counts: ...


@dataclass(frozen=True)
class Job:
    """One server run: ``model`` from the tree at ``root``, under ``tool``."""

    side: str
    root: Path
    model: str
    tool: str  # "instructions" or "syscalls"
    cases: tuple[CostCase, ...]


@dataclass
class JobResult:
    """Per case: the counts of the short and the long window (or why there are none)."""

    job: Job
    windows: dict[str, tuple[Counts, Counts]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0


def thread_states(pid: int) -> list[str]:
    """The scheduler state letter of every thread of ``pid`` and its descendants."""
    states = []
    for proc in procs.tree(pid):
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            states.append(stat[stat.rindex(")") + 2])
    return states


def wait_idle(pid: int, timeout_s: float) -> list[int]:
    """Wait until every thread of the server's tree has been asleep for IDLE_POLLS looks in a
    row (a request's tail finished, forked workers set up), so a window starts and ends
    between requests; returns the tree's pids."""
    deadline = time.monotonic() + timeout_s
    calm, pids = 0, []
    while calm < IDLE_POLLS:
        if time.monotonic() > deadline:
            raise ProbeError(f"the server did not go idle within {timeout_s:g} s")
        now = sorted(p.pid for p in procs.tree(pid))
        states = thread_states(pid)
        calm = calm + 1 if now == pids and states and all(s in "SI" for s in states) else 0
        pids = now
        time.sleep(IDLE_POLL_S)
    return pids


def too_many_connections(model: str, case: CostCase) -> str | None:
    """Why ``model`` cannot take the case's connections at once (one request each, in turn,
    would wait for ever behind an unserved one), or None."""
    import servers

    try:
        limit = servers.clients_at_once(model)
    except (KeyError, ImportError):
        return None
    if limit is not None and case.connections > limit:
        return f"serves {limit} connection(s) at a time; the case holds {case.connections}"
    return None


def make_meter(tool: str, out_dir: Path) -> Meter:
    return CallgrindMeter(out_dir) if tool == "instructions" else StraceMeter(out_dir)


def job_argv(job: Job, out_dir: Path) -> list[str]:
    prefix = valgrind_argv(out_dir) if job.tool == "instructions" else []
    return [*prefix, *server_argv(job.model)]


def measure_case(server: LaunchedServer, case: CostCase, meter: Meter, slowdown: float
                 ) -> tuple[Counts, Counts]:
    """Warm up, then the short window and the long one, each between idle points."""
    idle_s = READY_S * slowdown
    with Driver(server.address, case, REPLY_S * slowdown) as driver:
        driver.send(case.warmup)
        windows = []
        for count in (case.short, case.long):
            meter.start(wait_idle(server.pid, idle_s), continued=bool(windows))
            driver.send(count)
            wait_idle(server.pid, idle_s)
            windows.append(meter.stop())
    return windows[0], windows[1]


def run_job(job: Job, work_dir: Path) -> JobResult:
    """Start the server under the job's tool, measure every case, stop and reap it."""
    started = time.monotonic()
    result = JobResult(job)
    out_dir = Path(tempfile.mkdtemp(prefix=f"{job.side}-{job.model}-{job.tool}-", dir=work_dir))
    slowdown = SLOWDOWN if job.tool == "instructions" else 1.0
    env = child_env(job.root, {"PYTHONHASHSEED": "0"})  # the same dict layouts every run
    server = LaunchedServer(job_argv(job, out_dir), out_dir / "stdout", out_dir / "stderr",
                            cwd=job.root, env=env)
    try:
        server.wait_ready(READY_S * slowdown)
        meter = make_meter(job.tool, out_dir)
        for case in job.cases:
            if why := too_many_connections(job.model, case):
                result.skipped[case.name] = why
                continue
            result.windows[case.name] = measure_case(server, case, meter, slowdown)
        # stop from rest: gevent under valgrind misses a SIGTERM that lands while it is
        # still closing the client's connection (it then hangs until SIGKILL)
        wait_idle(server.pid, READY_S * slowdown)
    except (LaunchFailed, ProbeError, ClientError) as error:
        tail = server.stderr_tail(300)
        result.error = f"{error}" + (f" (server stderr: {tail})" if tail else "")
    finally:
        stopped = server.stop(grace_s=STOP_S * slowdown)
        if result.error is None and (stopped.killed or stopped.returncode != 0):
            result.error = (f"server did not exit cleanly (status {stopped.returncode}, "
                            f"killed={stopped.killed}): {server.stderr_tail(300)}")
        shutil.rmtree(out_dir, ignore_errors=True)
    result.wall_s = round(time.monotonic() - started, 2)
    return result


def default_jobs() -> int:
    """Two runs per CPU: each spends a good part of its time waiting (start-up I/O, vgdb's
    ptrace hand-offs, the idle checks), so one per CPU leaves them half used; the counts do
    not care (measured: the gate's cost stage over 19 models took 138 s with 2 jobs, 108 s
    with 3 and 88 s with 4 on 2 CPUs)."""
    return 2 * max(1, len(os.sched_getaffinity(0)))


def run_jobs(jobs: Sequence[Job], parallel: int, progress: Progress) -> list[JobResult]:
    """Every job, ``parallel`` at a time, in the given order; a temporary folder for their logs."""
    work_dir = Path(tempfile.mkdtemp(prefix="concbench-cost-"))

    def one(job: Job) -> JobResult:
        result = run_job(job, work_dir)
        status = f"FAILED: {result.error}" if result.error else "ok"
        progress(f"{job.side} {job.model} {job.tool}: {status} ({result.wall_s:.1f} s)")
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            return list(pool.map(one, jobs))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def jobs_for(models: Iterable[str], cases: Sequence[CostCase], root: Path = REPO_ROOT,
             side: str = "head", tools: Sequence[str] = TOOLS) -> list[Job]:
    """The callgrind runs first: they are the long ones, so the pool ends together."""
    models = list(models)
    return [Job(side, root, model, tool, tuple(cases)) for tool in tools for model in models]
