"""Machine calibration: a few seconds at the start of a run that say how fast this machine is today.

Absolute figures do not travel between machines or days (this 2-core box has run 3x slower
from one day to the next), and conclusions can flip with the machine; these figures, recorded
in the run's environment, let a reader see why:

- ``python_loop``: WORK iterations per second of the pure-Python loop every model runs
  (``protocol.work``), on each CPU alone and on all CPUs at once (shared cores, SMT or
  throttling show as the second falling below the first);
- ``pingpong``: round trips per second of one byte between two C processes over a socketpair,
  on one CPU and across two (the scheduler's and the wake-up's cost, which every ECHO pays);
- ``syscall_ns``: the cost of the cheapest system call (getppid), in C.

Each part that cannot run (no C compiler, a CPU we may not use) says why in its place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.analysis.assurance import calibration_line as describe
from servers.native import BuildError, build

__all__ = ["BuildError", "describe", "measure", "native_costs", "python_loop"]

SOURCE = Path(__file__).with_name("calibrate.c")
WINDOW_S = 0.3  # each measurement's length
TIMEOUT_S = 20.0

# runs in a child pinned to one CPU: WORK iterations per second over about WINDOW_S
_LOOP = """
import os, sys, time
from protocol import work
os.sched_setaffinity(0, {int(sys.argv[1])})
window, chunk, done = float(sys.argv[2]), 20_000, 0
start = time.perf_counter()
while time.perf_counter() - start < window:
    work(b"calibration", chunk)
    done += chunk
print(done / (time.perf_counter() - start))
"""


def _loop_children(cpus: list[int]) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", _LOOP, str(cpu), str(WINDOW_S)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for cpu in cpus]


def _collect(children: list[subprocess.Popen[str]], cpus: list[int]) -> dict[str, float]:
    rates = {}
    for cpu, child in zip(cpus, children, strict=True):
        try:
            out, err = child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise RuntimeError(f"the loop on CPU {cpu} did not finish") from None
        if child.returncode != 0:
            raise RuntimeError(f"the loop on CPU {cpu} failed: {err.strip()[-200:]}")
        rates[str(cpu)] = round(float(out), 1)
    return rates


def python_loop(cpus: list[int]) -> dict[str, Any]:
    """WORK iterations/s on each CPU alone, then on all of them at once."""
    alone: dict[str, float] = {}
    for cpu in cpus:
        alone.update(_collect(_loop_children([cpu]), [cpu]))
    together = _collect(_loop_children(cpus), cpus)
    return {"unit": "WORK iterations per second", "alone": alone, "all_at_once": together}


def _native(binary: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(binary), *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"calibrate {' '.join(args)} failed: {done.stderr.strip()[-200:]}")
    return json.loads(done.stdout)


def native_costs(cpus: list[int]) -> dict[str, Any]:
    """Round trips per second on one CPU and across two; one system call's cost."""
    binary = build(SOURCE)
    first, second = cpus[0], cpus[-1]
    window = str(WINDOW_S)
    result: dict[str, Any] = {
        "pingpong_same_cpu_per_s": _native(binary, "pingpong", str(first), str(first),
                                           window)["per_second"],
        "syscall_ns": _native(binary, "syscall", window)["ns"],
    }
    if second != first:
        result["pingpong_two_cpus_per_s"] = _native(binary, "pingpong", str(first),
                                                    str(second), window)["per_second"]
    return result


def measure(cpus: list[int]) -> dict[str, Any]:
    """The calibration of the CPUs a run uses; never raises (a failed part says why)."""
    started = time.monotonic()
    record: dict[str, Any] = {"cpus": cpus}
    try:
        record["python_loop"] = python_loop(cpus)
    except (OSError, RuntimeError, ValueError) as error:
        record["python_loop"] = {"error": str(error)}
    try:
        record.update(native_costs(cpus))
    except (OSError, RuntimeError, ValueError, BuildError, subprocess.TimeoutExpired) as error:
        record["native_error"] = str(error)
    record["seconds"] = round(time.monotonic() - started, 2)
    return record
