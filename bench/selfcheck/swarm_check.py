"""``python -m bench swarm-check`` (``make bench-swarm``): is the Python swarm fast enough?

The swarm's performance goal (README, "The swarm") as a benchmark. The server is pinned to
one core and the load generator to another; 50 connections, 64-byte ECHO, closed loop, one
request in flight each.

1. Against ``native`` (the C server), the minimal native C client (``client.c`` beside this
   module) and the swarm (one worker) take turns, interleaved, over several rounds after a
   discarded warm-up of each; the goal is a median per-round ratio swarm/native of at least 0.85.
2. Against every Python model, the swarm must not be the bottleneck: its core under 90 %
   (its own ``client.cpu_percent``) while the server's core is saturated (>= 90 %, sampled with
   psutil over the swarm's measured window). The native client is run beside it as a reference:
   with one request in flight per connection the two sides often run in lockstep, each core
   about half busy, so neither saturates; the swarm then passes if it keeps up with the native
   client (ratio >= the goal), and is "inconclusive" otherwise.
3. Every run records how much of the two pinned cores other processes took ("others on
   cores"): on a shared machine that, not the programs, sets the figures.

A rich table goes to the terminal and the record to ``results/swarm_speed-<time>.json``.
Exit status: 0 every goal met, 1 a goal missed, 2 it could not run (no C compiler, no swarm),
130 interrupted. Every child process is stopped and reaped in each case.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import servers
from bench import procs
from bench.environment import collect, load_average, resolve_placement
from bench.selfcheck import native_client, swarm_speed
from bench.selfcheck.swarm_speed import (
    CONTENDED_PERCENT,
    GOAL_RATIO,
    BenchError,
    Settings,
    against_models,
    against_native,
    contended,
    fmt,
)
from bench.store import RESULTS_ROOT, atomic_write_json, utc_now
from servers import native


def rounds_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Against native: native C client vs Python swarm (1 worker)")
    for name in ("round", "native rps", "native CPU %", "server CPU %", "swarm rps",
                 "swarm CPU %", "server CPU % ", "others on cores %", "swarm/native"):
        table.add_column(name, justify="right")
    for r in summary["rounds"]:
        native_run, swarm = r["native"], r.get("swarm", {})
        table.add_row(str(r["round"]), fmt(native_run["throughput_rps"]),
                      fmt(native_run["client_cpu_percent"]),
                      fmt(native_run["server_cpu_percent"]), fmt(swarm.get("throughput_rps")),
                      fmt(swarm.get("client_cpu_percent")),
                      fmt(swarm.get("server_cpu_percent")),
                      _others_text(swarm), fmt(r.get("ratio"), 3))
    table.add_row("median", fmt(summary["native_rps_median"]),
                  fmt(summary["native_client_cpu_median"]),
                  fmt(summary["server_cpu_median_native_client"]),
                  fmt(summary["swarm_rps_median"]), fmt(summary["swarm_cpu_median"]),
                  fmt(summary["server_cpu_median_swarm"]), "",
                  fmt(summary["ratio_median"], 3), style="bold")
    return table


def _others_text(run: dict[str, Any]) -> str:
    """Other processes' share of the server's and the client's cores: 'server / client'."""
    if not run:
        return ""
    return (f"{fmt(run.get('server_core_others_percent'))} / "
            f"{fmt(run.get('client_core_others_percent'))}")


def models_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Against the Python models: is the swarm the bottleneck?")
    for name in ("model", "server CPU %", "swarm CPU %", "others on cores %", "swarm rps",
                 "native client rps", "swarm/native", "verdict"):
        table.add_column(name, justify="left" if name in ("model", "verdict") else "right")
    for entry in results:
        if "skipped" in entry or "error" in entry:
            note = entry.get("skipped") or f"[red]error: {entry['error']}"
            table.add_row(entry["model"], "", "", "", "", "", "", note)
            continue
        swarm, reference = entry["swarm"], entry.get("native") or {}
        style = "" if entry["ok"] else "red"
        table.add_row(entry["model"], fmt(swarm["server_cpu_percent"]),
                      fmt(swarm["client_cpu_percent"]), _others_text(swarm),
                      fmt(swarm["throughput_rps"]),
                      fmt(reference.get("throughput_rps")), fmt(entry.get("ratio"), 2),
                      entry["verdict"], style=style)
    return table


# -- main --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``swarm-check`` verb's options."""
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="measured seconds per client run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each measured window (default 1)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--payload", type=int, default=64, help="ECHO payload bytes")
    parser.add_argument("--models", default="all",
                        help="Python models to check, comma-separated; 'all' (default) or "
                             "'none'")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not run the native client against each Python model")
    parser.add_argument("--goal", type=float, default=GOAL_RATIO,
                        help=f"the swarm/native ratio to reach (default {GOAL_RATIO})")
    parser.add_argument("--json", type=Path, help="result path (default results/"
                        "swarm_speed-<time>.json)")


def _check_options(options: argparse.Namespace) -> str | None:
    if options.rounds < 1 or options.duration <= 0 or options.warmup < 0 \
            or options.connections < 1 or options.payload < 0:
        return "--rounds, --duration and --connections must be positive"
    return None


def choose_models(spec: str) -> list[str]:
    python_models = [m for m in servers.available_models() if m != "native"]
    if spec == "all":
        return python_models
    if spec == "none":
        return []
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in python_models]
    if unknown:
        raise SystemExit(f"unknown or unavailable model(s): {', '.join(unknown)}; "
                         f"available: {', '.join(python_models)}")
    return chosen


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(options: argparse.Namespace) -> int:
    """The self-check: the swarm against the native client, then against every model."""
    console = Console(stderr=True)
    problem = _check_options(options)
    if problem:
        console.print(f"[red]swarm-check: {problem}")
        return 2
    settings = Settings(connections=options.connections, payload=options.payload,
                        rounds=options.rounds, duration_s=options.duration,
                        warmup_s=options.warmup, goal_ratio=options.goal,
                        models=tuple(choose_models(options.models)),
                        reference=not options.no_reference)
    try:
        native.build_server()
        native_client.build_client()
    except native.BuildError as error:
        console.print(f"[red]cannot build the native reference (server and client): {error}")
        return 2
    placement = resolve_placement("split")
    if placement.note:
        console.print(f"[yellow]{placement.note}: the figures do not test the goal")
    problem = swarm_speed.swarm_problem()
    if problem:
        console.print(f"[red]the swarm cannot run (python -m clients swarm): {problem}\n"
                      "measuring the native client alone")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    record: dict[str, Any] = {"benchmark": "swarm_speed", "started_at": utc_now(),
                              "settings": asdict(settings),
                              "environment": collect(placement)}
    try:
        with tempfile.TemporaryDirectory(prefix="swarm_speed-") as folder:
            work_dir = Path(folder)
            record["native"] = against_native(settings, placement, work_dir, console,
                                              problem is None)
            if problem is None:
                record["models"] = against_models(settings, placement, work_dir, console,
                                                  settings.models)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every child process was stopped")
        return 130
    except (BenchError, native.BuildError) as error:
        console.print(f"[red]benchmark failed: {error}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        procs.kill_all()
    record["environment"]["load_average_after"] = load_average()
    record["swarm_problem"] = problem
    return report(record, options.json, console)


def report(record: dict[str, Any], path: Path | None, console: Console) -> int:
    """Write the JSON record (first: a closed terminal pipe cannot lose it), then print the
    tables and verdicts; the exit status."""
    summary = record["native"]
    models = record.get("models", [])
    goal_met = summary["goal_met"]
    models_ok = all(entry["ok"] for entry in models)
    shared = summary["contended_runs"] + sum(
        contended(entry[kind]) for entry in models for kind in ("swarm", "native") if kind in entry)
    record.update(goal_met=goal_met, models_ok=models_ok, contended_runs_total=shared)
    path = path or RESULTS_ROOT / f"swarm_speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    console.print(f"wrote {path}")

    out = Console() if sys.stdout.isatty() else Console(width=160)
    out.print(rounds_table(summary))
    if models:
        out.print(models_table(models))
    if goal_met is None:
        out.print("[bold red]goal not measured: the swarm could not run")
    else:
        verdict = "[bold green]MET" if goal_met else "[bold red]MISSED"
        out.print(f"swarm/native median ratio {summary['ratio_median']:.3f} "
                  f"(rounds {summary['ratio_min']:.3f}–{summary['ratio_max']:.3f}), "
                  f"goal >= {summary['goal_ratio']}: {verdict}")
    if models:
        out.print("swarm never the bottleneck against the Python models: "
                  + ("[bold green]yes" if models_ok else "[bold red]NO"))
    if shared:
        out.print(f"[bold yellow]{shared} run(s) shared a pinned core with other processes "
                  f"(> {CONTENDED_PERCENT:g} % of it, column 'others on cores'): their figures "
                  "describe a busy machine, not the two programs")
    load = record["environment"]
    out.print(f"load average before {load['load_average_before']}, after "
              f"{load['load_average_after']} (a busy machine makes every figure noisy)")
    if goal_met is None:
        return 2
    return 0 if goal_met and models_ok else 1
