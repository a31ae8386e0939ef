"""``python -m bench cost``: instructions and system calls per request, per model and case.

Each model runs twice: under callgrind (instructions) and natively under strace (system
calls), both through the launch contract; a deterministic blocking client sends a warm-up,
then two windows of requests, and the figure is the difference of the windows over the
difference of their request counts, so start-up and shutdown are not in it. Runs go
``--jobs`` at a time (two per CPU by default: the counts do not depend on timing). Needs
Debian's ``valgrind`` and ``strace`` (``make cost`` installs them as root).

Exit status: 0 every model measured, 1 some model failed, 2 the probe could not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.cost.cases import CASES, DEFAULT_CASES, CostCase
from bench.cost.figures import case_description, model_figures
from bench.cost.run import TOOLS, default_jobs, jobs_for, run_jobs
from bench.cost.tools import install_hint, missing_packages
from bench.cost.xray import table_rows
from bench.store import RESULTS_ROOT, atomic_write_json, utc_now

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
TABLE_WIDTH = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated models (default: every one here)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases among {', '.join(CASES)}")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help="instructions, syscalls or both (default both)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="server runs at a time (default: twice the CPUs we may use)")
    parser.add_argument("--json", type=Path, help="record file (default results/cost/)")


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr \
        else "?"


def environment() -> dict[str, Any]:
    """What the figures depend on: the interpreter and the tools (not the machine's load)."""
    return {"python": sys.version.split()[0], "executable": sys.executable,
            "valgrind": tool_version(["valgrind", "--version"]),
            "strace": tool_version(["strace", "-V"]),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def probe(models: list[str], cases: list[CostCase], *, tools: tuple[str, ...] = TOOLS,
          jobs: int = 1, root: Path = REPO_ROOT, side: str = "head",
          progress: Any = None) -> dict[str, Any]:
    """Measure ``models`` x ``cases`` from the tree at ``root``; the probe's record."""
    started = time.monotonic()
    say = progress or (lambda message: print(f"[cost] {message}", file=sys.stderr, flush=True))
    results = run_jobs(jobs_for(models, cases, root, side, tools), jobs, say)
    return {"kind": "concbench-cost", "version": 1, "created": utc_now(),
            "environment": environment(),
            "cases": {case.name: case_description(case) for case in cases},
            "models": model_figures(results, {case.name: case for case in cases}),
            "wall_s": round(time.monotonic() - started, 1)}


def print_table(record: dict[str, Any]) -> None:
    """The record as a terminal table that fits 100 columns."""
    from rich.console import Console
    from rich.table import Table

    columns, rows = table_rows(record)
    table = Table(title="cost per request (instructions under callgrind, system calls "
                  "under strace)", title_justify="left")
    for name in columns:
        numeric = name in {"instructions", "syscalls"}
        table.add_column(name, justify="right" if numeric else "left",
                         overflow="fold", no_wrap=numeric)
    for row in rows:
        table.add_row(*(str(row[name]) for name in columns))
    Console(width=TABLE_WIDTH).print(table)


def default_json_path() -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return RESULTS_ROOT / "cost" / f"{stamp}.json"


def available_models() -> list[str]:
    import servers

    return servers.available_models()


def run(options: argparse.Namespace) -> int:
    """Probe, print the table, write the record."""
    tools = tuple(t for t in options.tools.split(",") if t)
    needed = tuple(n for t in tools
                   for n in (("valgrind", "vgdb") if t == "instructions"
                             else ("strace",)))
    if bad := [t for t in tools if t not in TOOLS]:
        print(f"unknown tool {bad[0]!r}; choose among {', '.join(TOOLS)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if missing := missing_packages(needed):
        print(install_hint(missing), file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        cases = [CASES[name] for name in options.cases.split(",") if name]
    except KeyError as error:
        print(f"unknown case {error}; known: {', '.join(CASES)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    here = available_models()
    models = [m for m in options.models.split(",") if m] if options.models else here
    if unknown := [m for m in models if m not in here]:
        print(f"model {unknown[0]!r} is not available here; these are: {', '.join(here)}",
              file=sys.stderr)
        return EXIT_CANNOT_RUN
    record = probe(models, cases, tools=tools, jobs=options.jobs)
    print_table(record)
    path = options.json or default_json_path()
    atomic_write_json(path, record, indent=2)
    print(f"record written to {path} ({record['wall_s']:.0f} s)", file=sys.stderr)
    failed = any(entry["error"] for entry in record["models"].values())
    return EXIT_FAILED if failed else EXIT_OK
