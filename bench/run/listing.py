"""``python -m bench list``: the models that can run here and the scenarios, with estimates."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from bench import REPO_ROOT
from bench.launch import child_env
from bench.run import scenario
from bench.run.scenario import ScenarioError

LIST_TIMEOUT_S = 60.0


def terminal() -> Console:
    """A terminal sets its own width; logs and pipes get one wide enough for the tables."""
    return Console(width=None if sys.stdout.isatty() else 150)


def models_under(interpreter: str, root: Path = REPO_ROOT) -> tuple[list[str], list[str]]:
    """``python -m servers --list`` under ``interpreter`` (in a child, so that importing a
    model never touches this process): the models that can run, and notes on the others."""
    try:
        done = subprocess.run([interpreter, "-m", "servers", "--list"], cwd=root,
                              env=child_env(root), capture_output=True, text=True,
                              timeout=LIST_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], [f"{interpreter}: cannot list models: {error}"]
    notes = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0:
        return [], [f"{interpreter} -m servers --list failed ({done.returncode})", *notes]
    return [line.strip() for line in done.stdout.splitlines() if line.strip()], notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``list`` takes no options."""


def run(options: argparse.Namespace) -> int:
    """List the models that can run here and every scenario with its time estimate."""
    console = terminal()
    models, notes = models_under(sys.executable)
    try:
        described = subprocess.run([sys.executable, "-m", "servers", "--list", "-v"],
                                   cwd=REPO_ROOT, env=child_env(REPO_ROOT), text=True,
                                   capture_output=True, timeout=LIST_TIMEOUT_S,
                                   check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        described = "\n".join(models)
    console.print("[bold]models[/bold] (python -m servers MODEL):")
    console.print(described.rstrip() or "(none)", soft_wrap=True, highlight=False)
    for note in notes:
        console.print(f"  [yellow]{note}[/yellow]")
    console.print("\n[bold]scenarios[/bold] (python -m bench run --scenario NAME):")
    for name in scenario.scenario_names():
        try:
            loaded = scenario.load(name)
        except ScenarioError as error:
            console.print(f"  {name:10} [red]invalid: {error}[/red]")
            continue
        # every interpreter the scenario lists counted as present (listing probes none)
        pairs = [(sys.executable, f"i{n}") for n in range(len(loaded.interpreters))] \
            or [(sys.executable, None)]
        labels, _ = scenario.resolve_models(loaded, {sys.executable: models}, pairs)
        trials = scenario.plan(loaded, labels)
        estimate = scenario.estimate_s(trials)
        console.print(f"  {name:10} {len(trials):4} trials, about {estimate / 60:4.1f} min "
                      f"here: {loaded.description}", soft_wrap=True)
    return 0
