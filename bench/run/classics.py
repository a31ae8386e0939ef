"""``python -m bench classics``: the field's known results, reproduced here.

    python -m bench classics [--out DIR] [--servers a,b]   run the classics scenario, analyse it
    python -m bench classics RUN_DIR                        analyse a finished run again

The verb of bench/classics/ (which analyses, and imports neither the runner nor the report):
writes classics.json into the run folder (bench/classics/document.py), prints one verdict per
experiment, and renders the run's report with a section per experiment. Exit status: 0 done
(whatever the verdicts: "not reproduced" is a finding, not a failure), 2 it could not run or
analyse, 130 interrupted (``bench run --resume DIR`` completes the run, then ``bench classics
DIR`` analyses it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding

from bench.analysis.frames import ReportError
from bench.classics import document
from bench.classics.common import NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED
from bench.store import RunStore

SCENARIO = "classics"
EXIT_OK, EXIT_CANNOT, EXIT_INTERRUPTED = 0, 2, 130
MARKS = {REPRODUCED: "[green]✓ reproduced[/green]",
         NOT_REPRODUCED: "[red]✗ not reproduced[/red]",
         NOT_MEASURABLE: "[yellow]– not measurable here[/yellow]"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR",
                        help="a finished classics run to analyse again (default: run one)")
    parser.add_argument("--out", type=Path,
                        help="run folder for a new run (default ./results/<UTC>-classics)")
    parser.add_argument("--servers", help="comma-separated models (default: the scenario's)")


def _run_scenario(options: argparse.Namespace) -> tuple[int, Path]:
    """``bench run --scenario classics`` without its report (drawn once, after the analysis)."""
    from bench.cli import parser
    from bench.run import run as run_verb

    out = options.out or RunStore.default_dir(SCENARIO)
    argv = ["run", "--scenario", SCENARIO, "--out", str(out), "--no-report"]
    if options.servers:
        argv += ["--servers", options.servers]
    return run_verb.run(parser("run").parse_args(argv)), out


def print_verdicts(content: dict[str, Any], console: Console) -> None:
    """One block per experiment: its verdict, title and the measured reason."""
    for experiment in content["experiments"]:
        console.print(f"{MARKS[experiment['verdict']]}  [bold]{escape(experiment['name'])}"
                      f"[/bold]: {escape(experiment['title'])}", highlight=False)
        console.print(Padding(escape(experiment["reason"]), (0, 0, 0, 4)), highlight=False)
    counts = content["verdicts"]
    console.print(f"\n{counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
                  f"{counts[NOT_MEASURABLE]} not measurable here", highlight=False)


def run(options: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 100)
    run_dir = options.run_dir
    if run_dir is None:
        status, run_dir = _run_scenario(options)
        if status != EXIT_OK:
            return status
    try:
        content = document.write(run_dir)
    except ReportError as error:
        print(f"bench classics: {error}", file=sys.stderr)
        return EXIT_CANNOT
    print_verdicts(content, console)
    from bench.report import document as report

    report.render(run_dir, console)
    console.print(f"classics: {Path(run_dir) / document.FILE_NAME}", highlight=False)
    return EXIT_OK
