"""``python -m bench run``: a scenario into a run folder, then its report.

    python -m bench run --scenario NAME|PATH.toml [--servers a,b] [--out DIR] [--repeat N]
                        [--placement split|same|none] [--resume DIR] [--hosts HOSTS.toml]

(python -m bench list: the scenarios, with their time here.)

Exit status: 0 the run completed (failed trials are recorded in it), 1 it completed but the
report could not be rendered, 2 it could not start, 130 it was interrupted (``--resume
RUN_DIR`` completes it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from bench import REPO_ROOT, procs
from bench.cli import at_least_one
from bench.launch import child_env
from bench.run import scenario
from bench.run.command import (
    EXIT_CANNOT_RUN,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REPORT_FAILED,
    PreparedRun,
    RunRefused,
    execute,
    prepare_new,
    prepare_resume,
)
from bench.run.listing import LIST_TIMEOUT_S, terminal
from bench.run.runner import StopOnSignal, finish_run
from bench.run.scenario_check import ScenarioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` verb's options."""
    parser.add_argument("--scenario", help=f"{', '.join(scenario.scenario_names())} "
                        "(bench/scenarios/), or a path to a .toml file")
    parser.add_argument("--servers", help="comma-separated models (default: the scenario's, or "
                     "every available one)")
    parser.add_argument("--out", type=Path,
                        help="run folder (default ./results/<UTC>-<scenario>)")
    parser.add_argument("--repeat", type=at_least_one, help="repetitions (overrides the scenario)")
    parser.add_argument("--placement", choices=scenario.PLACEMENTS,
                     help="split: server on one core, swarm on the rest (default); same: both "
                     "on the server's core; none: no pinning")
    parser.add_argument("--duration", type=float, help="measured seconds per trial (override)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per trial (override)")
    parser.add_argument("--window-scale", type=float, metavar="K",
                        help="every window K times longer, sized for K times the requests: the "
                             "same scenario measured longer (override)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="complete an interrupted run (its trials with a record are skipped)")
    parser.add_argument("--hosts", type=Path, metavar="HOSTS.toml",
                        help="run the server and the swarm on other hosts, over execnet "
                             "gateways (bench/hosts/config.py has the format; default: all "
                             "on this machine)")
    parser.add_argument("--no-report", action="store_true", help="do not render the report")
    parser.add_argument("--swarm-command", nargs="+", help=argparse.SUPPRESS)


def check_swarm(command: Sequence[str]) -> None:
    """Fail early, with the reason, if the swarm cannot even show its help."""
    try:
        done = subprocess.run([*command, "--help"], cwd=REPO_ROOT, env=child_env(REPO_ROOT),
                              capture_output=True, text=True, timeout=LIST_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RunRefused(f"the swarm ({' '.join(command)}) cannot start: {error}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunRefused(f"the swarm ({' '.join(command)}) cannot start: {last}")


def _check_resume_options(options: argparse.Namespace) -> None:
    """--resume continues a run exactly as planned: options that would change it are errors."""
    given = [f"--{name.replace('_', '-')}" for name in ("scenario", "servers", "out", "repeat",
                                                         "placement", "duration", "warmup",
                                                         "window_scale")
             if getattr(options, name) is not None]
    if given:
        raise RunRefused(f"--resume continues the run as it was planned; drop {', '.join(given)}")


def run(options: argparse.Namespace) -> int:
    """Prepare (or reopen) the run, run it under Ctrl-C handling, finish it, report it."""
    console = terminal()
    stop = threading.Event()
    prepared: PreparedRun | None = None
    with StopOnSignal(stop) as signals:
        try:
            if options.swarm_command:  # the swarm service checks itself as it starts
                check_swarm(options.swarm_command)
            if options.resume:
                _check_resume_options(options)
                prepared = prepare_resume(options.resume, console, options.hosts,
                                          options.swarm_command)
            else:
                prepared = prepare_new(options, console)
            status = execute(prepared, console, stop)
            if status == EXIT_INTERRUPTED:
                signals.ignore_further()
        except (RunRefused, ScenarioError) as error:
            print(f"bench run: {error}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        except KeyboardInterrupt:  # a second Ctrl-C outside a trial: stop now
            signals.ignore_further()
            procs.kill_all()
            if prepared is not None and prepared.store.run_json.exists():
                finish_run(prepared.store, "interrupted")
            console.print("[yellow]interrupted[/yellow]")
            return EXIT_INTERRUPTED
    if status != EXIT_OK or options.no_report:
        return status
    # the run's last step is its report: the one summary, from the same analysis as the files
    from bench.report import document

    return EXIT_OK if document.render(prepared.store.run_dir, console) == 0 else EXIT_REPORT_FAILED
