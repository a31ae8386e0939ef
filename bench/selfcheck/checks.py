"""What the self-checks of ``python -m bench validate`` share: a row of the report card
(``Check``) and one swarm run (``swarm``); they pin their processes with
``bench.environment.one_cpu_each``. validate.py and redis_check.py
both import it, neither the other's internals.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, procs
from bench.launch import child_env
from bench.selfcheck.swarm_speed import SWARM_COMMAND, BenchError


@dataclass
class Check:
    """One row of the report card."""

    name: str
    figure: str
    value: float | None
    band: str
    outcome: str  # "pass", "fail", "skip" or "info" (shown, not judged)
    note: str = ""


def swarm(target: str, cpus: tuple[int, ...] | None, work: Path, label: str,
          *args: str, duration: float = 2.0, warmup: float = 0.5) -> dict[str, Any]:
    """One ``python -m clients swarm`` run, pinned to ``cpus``; its record."""
    out = work / f"{label}.json"
    command = [*SWARM_COMMAND, "--target", target, "--duration", str(duration),
               "--warmup", str(warmup), "--timeout", "10", "--quiet", "--json", str(out), *args]
    proc = procs.spawn(command, cpus=cpus, cwd=REPO_ROOT, env=child_env(REPO_ROOT))
    try:
        proc.wait(timeout=duration + warmup + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"swarm {label} overran") from None
    finally:
        procs.stop(proc, sig=signal.SIGINT, grace_s=2.0)
    try:
        return json.loads(out.read_text())
    except (OSError, ValueError) as error:
        raise BenchError(f"swarm {label} left no record: {error}") from None
