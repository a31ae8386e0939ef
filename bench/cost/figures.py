"""Window counts -> figures per request, and the probe's JSON record.

Per model and case: ``instructions_per_request`` (a float) and ``syscalls_per_request``
({name: calls per request, ..., "total": ...}), with ``syscall_errors_per_request`` beside it
(the non-blocking loop's failed ``recv``s are errors: EAGAIN).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.cost.cases import CostCase
from bench.cost.run import Counts, JobResult

ERR = "!err"
# per request, a hundredth of a call: strace's attach and detach may catch one blocked call
# more or less in a window (1 in 800 requests), which the difference of windows cannot cancel
DECIMALS = 2


def per_request(short: Counts, long: Counts, delta: int) -> dict[str, float]:
    """(long - short) / delta for every key; keys that are zero in both windows left out."""
    keys = sorted(set(short) | set(long))
    return {key: round((long.get(key, 0) - short.get(key, 0)) / delta, DECIMALS) for key in keys
            if long.get(key, 0) or short.get(key, 0)}


def syscall_figures(short: Counts, long: Counts, delta: int) -> dict[str, dict[str, float]]:
    """Calls per request by name (with their total), and errors per request by name."""
    both = per_request(short, long, delta)
    calls = {k: v for k, v in both.items() if not k.endswith(ERR) and v}
    calls["total"] = round(sum(calls.values()), DECIMALS)
    errors = {k.removesuffix(ERR): v for k, v in both.items() if k.endswith(ERR) and v}
    return {"syscalls_per_request": calls, "syscall_errors_per_request": errors}


def model_figures(results: Iterable[JobResult], cases: dict[str, CostCase]
                  ) -> dict[str, dict[str, Any]]:
    """One side's job results -> {model: {"error", "skipped", "cases": {case: figures}}}."""
    models: dict[str, dict[str, Any]] = {}
    for result in results:
        job = result.job
        entry = models.setdefault(job.model, {"error": None, "skipped": {}, "cases": {},
                                              "wall_s": 0.0})
        entry["wall_s"] = round(entry["wall_s"] + result.wall_s, 2)
        if result.error:
            entry["error"] = "; ".join(filter(None, [entry["error"],
                                                     f"{job.tool}: {result.error}"]))
        entry["skipped"].update(result.skipped)
        for name, (short, long) in result.windows.items():
            figures = entry["cases"].setdefault(name, {})
            delta = cases[name].delta
            if job.tool == "instructions":
                figures["instructions_per_request"] = round(
                    (long["Ir"] - short["Ir"]) / delta, 1)
                figures["instructions_windows"] = [short["Ir"], long["Ir"]]
            else:
                figures.update(syscall_figures(short, long, delta))
                figures["syscall_windows"] = [short, long]
    return models


def case_description(case: CostCase) -> dict[str, Any]:
    return {"op": case.op.name, "value": case.value, "payload_bytes": case.payload_bytes,
            "connections": case.connections, "warmup": case.warmup,
            "windows": [case.short, case.long]}
