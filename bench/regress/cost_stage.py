"""Stage 1 of the gate: instructions and system calls per request, base against head.

Both sides' servers run under the cost probe (bench/cost/: callgrind and strace, the head's
deterministic client), every job in parallel over the CPUs. Per model and case:

- instructions per request: flagged when the head needs more than ``threshold_pct`` (1 %)
  more than the base;
- system calls per request, by name, at one connection: flagged when any name's count grows
  by more than ``SYSCALL_TOLERANCE`` calls per request (there the counts are exact integers;
  with 16 connections a thread model's futex count follows who gets the GIL first, so
  there they are shown, not gated);
- a flagged model is measured again, both sides; only a second flag confirms it (the counts
  do not drift, so this costs time only when something changed).

Model and case pairs whose counts follow the clock are measured and shown but not gated: a
figure that moves between runs of the same code would only raise false alarms. They are the
pairs listed in ``TIMING_DEPENDENT`` (from the A/A runs in the README), and any one-connection
case whose base makes a fractional number of some system call per request: one request in
flight gives a deterministic loop whole numbers, so a fraction means the loop races the
client (a ``recv`` that sometimes finds the next request, sometimes EAGAIN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cost.cases import CASES, CostCase
from bench.cost.figures import model_figures
from bench.cost.run import Job, run_jobs
from bench.regress import stats as rs

DEFAULT_THRESHOLD_PCT = 1.0
SYSCALL_TOLERANCE = 0.05  # calls per request, per name
GATE_CASES = ("echo64-c1",)
WHOLE = 0.02  # a count per request this close to an integer is a whole number
# (model, case or "*") whose per-request counts depend on timing, not only on the code
TIMING_DEPENDENT = {
    ("nonblocking", "*"): "polls every socket on a timer: its counts follow the clock",
    ("gevent", "echo64-c1"): "its recv races the next request (EAGAIN, then a hub wait): "
                             "4 % apart between runs",
    ("gevent", "work2k-c1"): "its recv races the next request (EAGAIN, then a hub wait)",
    # not timing but place: steady to the instruction from one folder, yet the base worktree
    # and the head's copy gave it -0.2 % to -1.4 % in five A/A gates
    ("twisted", "*"): "its count follows the folder it runs from (A/A: up to 1.4 % apart)",
}


def timing_dependent(model: str, case: str, base_calls: dict[str, float] | None = None,
                     connections: int = 1) -> str | None:
    """Why this model and case is not gated, or None."""
    if listed := TIMING_DEPENDENT.get((model, case)) or TIMING_DEPENDENT.get((model, "*")):
        return listed
    if connections != 1 or not base_calls:
        return None
    fractional = {k: v for k, v in base_calls.items() if abs(v - round(v)) > WHOLE}
    if fractional:
        name, value = next(iter(fractional.items()))
        return (f"{value:g} {name} per request on the base, not a whole number: its loop races "
                "the client, so its counts follow timing")
    return None

Figures = dict[str, dict[str, Any]]  # model -> probe figures (bench.cost.figures)
SideFigures = dict[str, Figures]  # "base"/"head" -> Figures
Progress = Callable[[str], None]
CostMeasure = Callable[[list[str], tuple[CostCase, ...], dict[str, Path], int, Progress],
                       SideFigures]


def measure_sides(models: list[str], cases: tuple[CostCase, ...], roots: dict[str, Path],
                  jobs: int, progress: Progress) -> SideFigures:
    """The real measurement: every (model, side, tool) job, ``jobs`` at a time."""
    plan = [Job(side, roots[side], model, tool, cases)
            for tool in ("instructions", "syscalls") for model in models
            for side in ("base", "head")]
    results = run_jobs(plan, jobs, progress)
    by_name = {case.name: case for case in cases}
    return {side: model_figures([r for r in results if r.job.side == side], by_name)
            for side in ("base", "head")}


def change_pct(base: float | None, head: float | None) -> float | None:
    if base is None or head is None or base == 0:
        return None
    return round((head / base - 1.0) * 100.0, 3)


def pair(base: float | None, head: float | None) -> dict[str, float | None]:
    return {"base": base, "head": head, "change_pct": change_pct(base, head)}


@dataclass
class CostResult:
    """The verdict for one model and case."""

    model: str
    case: str
    status: str  # pass, faster, regression, accepted, unconfirmed, not gated, error, skipped
    note: str = ""
    instructions_per_request: dict[str, float | None] = field(default_factory=dict)
    syscalls_per_request: dict[str, float | None] = field(default_factory=dict)
    syscalls_by_name: dict[str, dict[str, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    passes: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "case": self.case, "status": self.status,
                "note": self.note, "instructions_per_request": self.instructions_per_request,
                "syscalls_per_request": self.syscalls_per_request,
                "syscalls_by_name": self.syscalls_by_name, "flags": self.flags,
                "passes": self.passes}


def syscall_changes(base: dict[str, float], head: dict[str, float]) -> dict[str, dict[str, float]]:
    names = sorted((set(base) | set(head)) - {"total"})
    return {name: {"base": base.get(name, 0.0), "head": head.get(name, 0.0)} for name in names}


def flags_of(result: CostResult, threshold_pct: float, syscalls: bool) -> tuple[list[str], bool]:
    """(what grew past its limit, whether anything shrank past it); system calls only when
    ``syscalls`` (at one connection)."""
    flags, faster = [], False
    instr = result.instructions_per_request.get("change_pct")
    if instr is not None and instr > threshold_pct:
        flags.append(f"instructions {instr:+.2f}%")
    faster = instr is not None and instr < -threshold_pct
    for name, counts in result.syscalls_by_name.items() if syscalls else ():
        grew = counts["head"] - counts["base"]
        if grew > SYSCALL_TOLERANCE:
            flags.append(f"{name} {grew:+.3g}/request")
        elif grew < -SYSCALL_TOLERANCE:
            faster = True
    return flags, faster


def compare(model: str, case: str, base: dict[str, Any], head: dict[str, Any],
            threshold_pct: float, connections: int = 1) -> CostResult:
    """One model and case, from both sides' probe figures."""
    for side, entry in (("base", base), ("head", head)):
        if entry.get("error"):
            return CostResult(model, case, "error", f"{side}: {entry['error']}"[:500])
        if case in entry.get("skipped", {}):
            return CostResult(model, case, "skipped", entry["skipped"][case])
    b, h = base["cases"].get(case, {}), head["cases"].get(case, {})
    b_calls, h_calls = b.get("syscalls_per_request", {}), h.get("syscalls_per_request", {})
    result = CostResult(
        model, case, "pass",
        instructions_per_request=pair(b.get("instructions_per_request"),
                                      h.get("instructions_per_request")),
        syscalls_per_request=pair(b_calls.get("total"), h_calls.get("total")),
        syscalls_by_name=syscall_changes(b_calls, h_calls))
    result.flags, faster = flags_of(result, threshold_pct, syscalls=connections == 1)
    if why := timing_dependent(model, case, b_calls, connections):
        result.status, result.note = "not gated", why
    elif result.flags:
        result.status = "flagged"
    elif faster:
        result.status = "faster"
    return result


def compare_all(models: list[str], cases: tuple[CostCase, ...], figures: SideFigures,
                threshold_pct: float) -> list[CostResult]:
    missing: dict[str, Any] = {"error": "not measured"}
    return [compare(model, case.name, figures["base"].get(model, missing),
                    figures["head"].get(model, missing), threshold_pct, case.connections)
            for case in cases for model in models]


def confirm(first: CostResult, second: CostResult, accepted: set[str]) -> CostResult:
    """A flag stands only when the rerun flags the same model and case again."""
    second.passes = first.passes + 1
    if second.status != "flagged":
        second.status, second.note = "unconfirmed", "flagged once, not by the rerun"
        return second
    what = ", ".join(second.flags)
    if rs.is_accepted(second.model, accepted):
        second.status, second.note = "accepted", f"accepted (perf-accept): {what}"
    else:
        second.status, second.note = "regression", what
    return second


def run_stage(models: list[str], roots: dict[str, Path], *, cases: tuple[str, ...] = GATE_CASES,
              threshold_pct: float = DEFAULT_THRESHOLD_PCT, accepted: set[str] | None = None,
              jobs: int = 4, progress: Progress = print,
              measure: CostMeasure = measure_sides) -> list[CostResult]:
    """Measure, compare, rerun the flagged models, and judge."""
    chosen = tuple(CASES[name] for name in cases)
    results = compare_all(models, chosen, measure(models, chosen, roots, jobs, progress),
                          threshold_pct)
    flagged = sorted({r.model for r in results if r.status == "flagged"})
    if flagged:
        progress(f"cost: flagged {', '.join(flagged)}; measuring again to confirm")
        again = compare_all(flagged, chosen, measure(flagged, chosen, roots, jobs, progress),
                            threshold_pct)
        reruns = {(r.model, r.case): r for r in again}
        results = [confirm(r, reruns[(r.model, r.case)], accepted or set())
                   if r.status == "flagged" else r for r in results]
    return results
