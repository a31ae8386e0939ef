"""``python -m bench list``: the models that can run here and the scenarios, with estimates."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

from rich.console import Console

from bench import REPO_ROOT
from bench.launch import child_env
from bench.run import planning, scenario
from bench.run.scenario_check import ScenarioError

LIST_TIMEOUT_S = 60.0
WIDTH = 100  # columns: every line of the listing fits a 100-column terminal


def terminal() -> Console:
    """A terminal sets its own width; logs and pipes get one wide enough for the tables."""
    return Console(width=None if sys.stdout.isatty() else 150)


def wrapped(text: str, indent: int, first: str = "") -> list[str]:
    """``first`` then ``text``, wrapped to ``WIDTH`` columns, later lines indented by
    ``indent`` (words are never cut; a path or a word longer than a line stands alone)."""
    return textwrap.wrap(text, WIDTH, initial_indent=first.ljust(indent) if first else " " * indent,
                         subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False) or [first]


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


def model_lines(described: str, notes: list[str]) -> list[str]:
    """``servers --list -v`` lines (name, then description) and the notes, wrapped."""
    lines = ["models (python -m servers MODEL):"]
    for line in described.splitlines():
        name, _, description = line.strip().partition(" ")
        lines += wrapped(description.strip(), 18, f"  {name}  ")
    for note in notes:
        lines += wrapped(note, 4, "  ")
    return lines


def scenario_lines() -> list[str]:
    """Each scenario: its trials and time estimate here, then its description, wrapped."""
    lines = ["scenarios (python -m bench run --scenario NAME):"]
    models = models_under(sys.executable)[0]
    for name in scenario.scenario_names():
        try:
            loaded = scenario.load(name)
        except ScenarioError as error:
            lines += wrapped(f"invalid: {error}", 4, f"  {name}  ")
            continue
        # every interpreter the scenario lists counted as present (listing probes none)
        pairs = [(sys.executable, f"i{n}") for n in range(len(loaded.interpreters))] \
            or [(sys.executable, None)]
        labels, _ = planning.resolve_models(loaded, {sys.executable: models}, pairs)
        trials = planning.plan(loaded, labels)
        estimate = planning.estimate_s(trials)
        lines.append(f"  {name:12} {len(trials):4} trials, about {estimate / 60:4.1f} min here")
        lines += wrapped(loaded.description, 4)
    return lines


def run(options: argparse.Namespace) -> int:
    """List the models that can run here and every scenario with its time estimate."""
    models, notes = models_under(sys.executable)
    try:
        described = subprocess.run([sys.executable, "-m", "servers", "--list", "-v"],
                                   cwd=REPO_ROOT, env=child_env(REPO_ROOT), text=True,
                                   capture_output=True, timeout=LIST_TIMEOUT_S,
                                   check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        described = "\n".join(models)
    print("\n".join([*model_lines(described, notes), "", *scenario_lines()]))
    return 0
