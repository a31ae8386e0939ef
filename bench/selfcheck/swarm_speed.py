"""What ``python -m bench swarm-check`` measures (the verb: swarm_check.py): the swarm and the
minimal native C client, each against a pinned server, with the server's and the client's CPU
and what other processes took of the pinned cores.

``against_native`` runs them in turns against the ``native`` model and ``summarize_rounds``
judges the goal; ``against_models`` runs the swarm against every Python model, the native
client beside it, and ``bottleneck_verdict`` says whether the swarm was the ceiling.
"""
from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

import servers
from bench import REPO_ROOT, procs
from bench.environment import Placement
from bench.launch import LaunchedServer, LaunchFailed, child_env, server_argv
from bench.sampling import TreeSampler, summarize_server
from bench.selfcheck import native_client

GOAL_RATIO = 0.85
SATURATED_PERCENT = 90.0
CONTENDED_PERCENT = 15.0  # other processes' share of a pinned core that makes a run "shared"
READY_TIMEOUT_S = 30.0  # the native model may compile on first use
CLIENT_ALLOWANCE_S = 20.0  # beyond warm-up + duration: interpreter start, connecting, drain
SERVER_STOP_S = 3.0  # the launch contract allows 2 s
SWARM_COMMAND = (sys.executable, "-m", "clients", "swarm")


class BenchError(Exception):
    """A measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Settings:
    """What one benchmark run does."""

    connections: int = 50
    payload: int = 64
    rounds: int = 5
    duration_s: float = 5.0
    warmup_s: float = 1.0
    timeout_s: float = 5.0
    goal_ratio: float = GOAL_RATIO
    models: tuple[str, ...] = ()
    reference: bool = True  # also run the native client against each Python model


# -- processes ---------------------------------------------------------------------------------


class RunningServer:
    """A model started through the launch contract, pinned, sampled every 100 ms."""

    def __init__(self, model: str, cpus: tuple[int, ...] | None, work_dir: Path) -> None:
        self.model = model
        self.cpus = cpus
        self.launched = LaunchedServer(server_argv(model), work_dir / f"server-{model}.out",
                                       work_dir / f"server-{model}.err", cpus=cpus)
        self.proc = self.launched.proc
        self.t0 = self.launched.started
        self.sampler = TreeSampler(self.proc.pid, self.t0)
        self.host, self.port = "", 0

    def start(self) -> None:
        """Wait for READY, then start sampling."""
        try:
            self.host, self.port = self.launched.wait_ready(READY_TIMEOUT_S)
        except LaunchFailed as error:
            raise BenchError(f"{self.model}: {error}") from None
        self.sampler.start()

    def stderr_tail(self) -> str:
        return self.launched.stderr_tail()

    def cpu_percent(self, window: tuple[float, float]) -> float | None:
        """The server's CPU use over a window on the monotonic clock."""
        start, end = window
        return summarize_server(self.sampler.samples, (start - self.t0, end - self.t0),
                                0.0)["cpu_percent"]

    def stop(self) -> None:
        """SIGTERM to the server process alone (the launch contract), then make sure its
        whole tree is gone and reaped."""
        if self.sampler.is_alive():
            self.sampler.stop()
        self.launched.stop(SERVER_STOP_S)


@contextlib.contextmanager
def running_server(model: str, cpus: tuple[int, ...] | None,
                   work_dir: Path) -> Iterator[RunningServer]:
    server = RunningServer(model, cpus, work_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _run_child(command: Sequence[str], cpus: tuple[int, ...] | None, budget_s: float,
               stdout_path: Path, stderr_path: Path) -> tuple[int | None, list[dict[str, Any]],
                                                             float]:
    """Run a load client pinned to ``cpus`` within ``budget_s``; always stop and reap it.

    Returns its exit status (None if it overran and was stopped), psutil samples of its
    process tree, and the monotonic time the samples count from.
    """
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = procs.spawn(command, cpus=cpus, cwd=REPO_ROOT, env=child_env(REPO_ROOT),
                           stdout=out, stderr=err)
    t0 = time.monotonic()
    sampler = TreeSampler(proc.pid, t0)
    sampler.start()
    status: int | None = None
    try:
        status = proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        sampler.stop()
        procs.stop(proc, sig=signal.SIGINT, grace_s=2.0)
    return status, sampler.samples, t0


# -- one load run ------------------------------------------------------------------------------


def _window(result: dict[str, Any]) -> tuple[float, float]:
    window = result.get("window") or {}
    start, end = window.get("monotonic_start_s"), window.get("monotonic_end_s")
    if not isinstance(start, int | float) or not isinstance(end, int | float) or end <= start:
        raise BenchError(f"the {result.get('client', 'swarm')} result has no measured window")
    return float(start), float(end)


def _max_cpu(value: Any) -> float | None:
    """The busiest worker's CPU (the swarm reports one figure per worker)."""
    if isinstance(value, list | tuple):
        figures = [v for v in value if isinstance(v, int | float)]
        return max(figures) if figures else None
    if isinstance(value, dict):
        return _max_cpu(list(value.values()))
    return float(value) if isinstance(value, int | float) else None


def run_load(kind: str, server: RunningServer, settings: Settings, client_cpus: tuple[int, ...]
             | None, work_dir: Path, label: str) -> dict[str, Any]:
    """One run of the native client or the swarm against ``server``; its figures."""
    out_path, err_path = work_dir / f"{label}.out", work_dir / f"{label}.err"
    json_path = work_dir / f"{label}.json"
    if kind == "native":
        command = native_client.client_command(
            native_client.build_client(), server.host, server.port,
            connections=settings.connections, payload=settings.payload,
            duration=settings.duration_s, warmup=settings.warmup_s, timeout=settings.timeout_s)
    else:
        command = [*SWARM_COMMAND, "--target", f"{server.host}:{server.port}",
                   "--connections", str(settings.connections), "--workers", "1",
                   "--duration", str(settings.duration_s), "--warmup", str(settings.warmup_s),
                   "--mode", "closed", "--pipeline", "1", "--mix", f"echo:{settings.payload}",
                   "--timeout", str(settings.timeout_s), "--quiet", "--json", str(json_path)]
    budget = settings.warmup_s + settings.duration_s + settings.timeout_s + CLIENT_ALLOWANCE_S
    before = psutil.cpu_times(percpu=True)
    status, samples, t0 = _run_child(command, client_cpus, budget, out_path, err_path)
    task_share = core_task_percent(before, psutil.cpu_times(percpu=True))
    if status is None:
        raise BenchError(f"{kind} client overran {budget:g} s and was stopped")
    try:
        if kind == "native":
            result = native_client.parse_result(out_path.read_text())
        else:
            result = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        stderr = err_path.read_text(errors="replace")[-1500:].strip()
        raise BenchError(f"{kind} client (exit {status}) left no result: {error}; "
                         f"stderr: {stderr}") from None
    window = _window(result)
    errors = result.get("errors") or {}
    error_count = sum(v for v in errors.values() if isinstance(v, int))
    if status != 0 or error_count:
        raise BenchError(f"{kind} client exit status {status}, errors {errors}")
    client = result.get("client") if isinstance(result.get("client"), dict) else {}
    own_cpu = result.get("cpu_percent") if kind == "native" else _max_cpu(client.get("cpu_percent"))
    tree_cpu = summarize_server(samples, (window[0] - t0, window[1] - t0), 0.0)["cpu_percent"]
    return {
        "client": kind,
        "throughput_rps": result.get("throughput_rps"),
        "responses": result.get("responses", result.get("requests")),
        "duration_s": result.get("duration_s"),
        "client_cpu_percent": own_cpu,  # as the client measured itself
        "client_tree_cpu_percent": tree_cpu,  # psutil, the client's whole process tree
        "client_saturated": bool(client.get("saturated")) if kind == "swarm" else None,
        "server_cpu_percent": server.cpu_percent(window),
        "latency_us": result.get("latency_us") if kind == "swarm" else None,
        # CPU that other processes took on the two cores over the client's whole run: more
        # than a few percent means the figures describe a shared machine, not the two programs
        "server_core_others_percent": _others(task_share, server.cpus,
                                              server.cpu_percent(window)),
        "client_core_others_percent": _others(task_share, client_cpus, tree_cpu),
    }


def core_task_percent(before: Sequence[Any], after: Sequence[Any]) -> list[float]:
    """Each CPU's time in processes (user, nice, system) between two snapshots, in percent.

    Interrupt and softirq time (loopback TCP's receive path) is left out, so that the figure
    compares with the processes' own CPU use."""
    shares = []
    for first, last in zip(before, after, strict=True):
        total = sum(last) - sum(first)
        tasks = sum(getattr(last, name, 0.0) - getattr(first, name, 0.0)
                    for name in ("user", "nice", "system"))
        shares.append(100.0 * tasks / total if total > 0 else 0.0)
    return shares


def _others(shares: list[float], cpus: tuple[int, ...] | None,
            own: float | None) -> float | None:
    """How much of a pinned process's (first) core went to other processes, in percent."""
    if not cpus or cpus[0] >= len(shares) or own is None:
        return None
    return max(0.0, shares[cpus[0]] - own)


def contended(run: dict[str, Any]) -> bool:
    """True when other processes took a real share of the server's or the client's core."""
    return any((run.get(key) or 0.0) > CONTENDED_PERCENT
               for key in ("server_core_others_percent", "client_core_others_percent"))


# -- the two parts -----------------------------------------------------------------------------


def _ratio(swarm: dict[str, Any], reference: dict[str, Any]) -> float | None:
    native_rps = reference.get("throughput_rps")
    swarm_rps = swarm.get("throughput_rps")
    if not native_rps or swarm_rps is None:
        return None
    return swarm_rps / native_rps


def against_native(settings: Settings, placement: Placement, work_dir: Path, console: Console,
                   swarm_available: bool) -> dict[str, Any]:
    """Part 1: the swarm and the native client take turns against the native server."""
    rounds: list[dict[str, Any]] = []
    kinds = ["native", "swarm"] if swarm_available else ["native"]
    with running_server("native", placement.server_cpus, work_dir) as server:
        warm = Settings(**{**asdict(settings), "duration_s": min(2.0, settings.duration_s)})
        for kind in kinds:
            console.log(f"native: warm-up run of the {kind} client (discarded)")
            run_load(kind, server, warm, placement.swarm_cpus, work_dir, f"warmup-{kind}")
        for index in range(settings.rounds):
            order = kinds if index % 2 == 0 else kinds[::-1]
            record: dict[str, Any] = {"round": index + 1, "order": order}
            for kind in order:
                console.log(f"native: round {index + 1}/{settings.rounds}, {kind} client")
                record[kind] = run_load(kind, server, settings, placement.swarm_cpus, work_dir,
                                        f"round{index + 1}-{kind}")
            if "swarm" in record:
                record["ratio"] = _ratio(record["swarm"], record["native"])
            rounds.append(record)
            console.log(_round_line(record))
    return summarize_rounds(rounds, settings.goal_ratio)


def _round_line(record: dict[str, Any]) -> str:
    parts = [f"round {record['round']}: native {fmt(record['native']['throughput_rps'])}/s"]
    if "swarm" in record:
        parts.append(f"swarm {fmt(record['swarm']['throughput_rps'])}/s")
        parts.append(f"ratio {fmt(record.get('ratio'), 3)}")
    return ", ".join(parts)


def summarize_rounds(rounds: list[dict[str, Any]], goal: float) -> dict[str, Any]:
    """Medians over the rounds and the verdict on the 0.85 goal."""
    def median_of(kind: str, key: str) -> float | None:
        values = [r[kind][key] for r in rounds if kind in r and r[kind].get(key) is not None]
        return statistics.median(values) if values else None

    ratios = [r["ratio"] for r in rounds if r.get("ratio") is not None]
    runs = [r[kind] for r in rounds for kind in ("native", "swarm") if kind in r]
    ratio = statistics.median(ratios) if ratios else None
    return {
        "rounds": rounds,
        "native_rps_median": median_of("native", "throughput_rps"),
        "swarm_rps_median": median_of("swarm", "throughput_rps"),
        "native_client_cpu_median": median_of("native", "client_cpu_percent"),
        "swarm_cpu_median": median_of("swarm", "client_cpu_percent"),
        "server_cpu_median_native_client": median_of("native", "server_cpu_percent"),
        "server_cpu_median_swarm": median_of("swarm", "server_cpu_percent"),
        "ratio_median": ratio,
        "ratio_min": min(ratios) if ratios else None,
        "ratio_max": max(ratios) if ratios else None,
        "goal_ratio": goal,
        "goal_met": None if ratio is None else ratio >= goal,
        "runs": len(runs),
        "contended_runs": sum(contended(run) for run in runs),
    }


def skip_reason(model: str) -> str | None:
    """Why a model cannot take this load at all: it serves only so many clients at once
    (iterative one, threadpool its pool), so the other connections would queue and time out."""
    at_once = servers.clients_at_once(model)
    if at_once is not None:
        return f"does not serve every connection at once (CLIENTS_AT_ONCE = {at_once})"
    return None


def bottleneck_verdict(swarm: dict[str, Any], reference: dict[str, Any] | None,
                       goal: float) -> tuple[str, bool]:
    """(verdict, ok): is the swarm the bottleneck against this model?"""
    swarm_cpu = swarm.get("client_cpu_percent")
    server_cpu = swarm.get("server_cpu_percent")
    if swarm.get("client_saturated") or (swarm_cpu is not None and swarm_cpu >= SATURATED_PERCENT):
        return f"swarm saturated ({fmt(swarm_cpu)} %)", False
    if server_cpu is not None and server_cpu >= SATURATED_PERCENT:
        return "ok (server saturated)", True
    ratio = _ratio(swarm, reference) if reference else None
    if ratio is not None and ratio >= goal:
        return "ok (keeps up with the native client)", True
    if contended(swarm):
        return "inconclusive (cores shared with other work)", True
    return "inconclusive (neither saturated)", True


def against_models(settings: Settings, placement: Placement, work_dir: Path,
                   console: Console, models: Sequence[str]) -> list[dict[str, Any]]:
    """Part 2: against each Python model, the swarm must not be the bottleneck."""
    results = []
    for model in models:
        entry: dict[str, Any] = {"model": model}
        if reason := skip_reason(model):
            entry.update(skipped=reason, ok=True)
            console.log(f"{model}: skipped ({reason})")
            results.append(entry)
            continue
        try:
            with running_server(model, placement.server_cpus, work_dir) as server:
                console.log(f"{model}: swarm")
                entry["swarm"] = run_load("swarm", server, settings, placement.swarm_cpus,
                                          work_dir, f"{model}-swarm")
                if settings.reference:
                    console.log(f"{model}: native client (reference)")
                    entry["native"] = run_load("native", server, settings, placement.swarm_cpus,
                                               work_dir, f"{model}-native")
            entry["server_exit_status"] = server.proc.returncode
            if server.proc.returncode != 0:  # a launch-contract problem, not a swarm one
                console.log(f"[yellow]{model} exited with status {server.proc.returncode} "
                            "on SIGTERM")
        except BenchError as error:
            entry.update(error=str(error), ok=False)
            console.log(f"[red]{model}: {error}")
            results.append(entry)
            continue
        entry["ratio"] = _ratio(entry["swarm"], entry["native"]) if "native" in entry else None
        entry["verdict"], entry["ok"] = bottleneck_verdict(entry["swarm"], entry.get("native"),
                                                           settings.goal_ratio)
        results.append(entry)
    return results


# -- output ------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    """A figure with thousands separators and ``digits`` decimals; "-" for none."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def swarm_problem() -> str | None:
    """Why ``python -m clients swarm`` cannot run here, or None."""
    try:
        done = subprocess.run([*SWARM_COMMAND, "--help"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr.strip()[-500:] or "exit status "
                                              f"{done.returncode}")
