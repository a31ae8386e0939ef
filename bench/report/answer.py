"""answer.json: the run's answer for CI and scripts, versioned (docs/results-format.md).

The same workloads, verdicts and validity as the report and the terminal summary; written
atomically, so a script never reads half of one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.analysis.assurance import NOISE_LIMIT, Assurance
from bench.analysis.validity import PER_REQUEST_ERROR_LIMIT
from bench.analysis.workload import Workload
from bench.store import atomic_write_json

ANSWER_FORMAT = 2


def _number(value: float) -> float | None:
    """A JSON number, or null for NaN and infinities."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 6)


def workload_entry(workload: Workload) -> dict[str, Any]:
    """One workload: its case, figure, best models and ties, interval, values, ratios."""
    verdict = workload.verdict
    span = verdict.interval
    return {
        "name": workload.name,
        "case": workload.case,
        "metric": workload.figure,
        "better": workload.better,
        "best": verdict.contenders,
        "ties": verdict.contenders[1:],
        "interval": [_number(span[0]), _number(span[1])] if span else None,
        "values": {m: _number(v) for m, v in workload.values.items()},
        "ratio_to_native": {m: _number(v) for m, v in workload.ratio_to_native().items()},
        "sentence": workload.sentence,
        # extra keys (docs/results-format.md)
        "outcome": verdict.outcome,
        "runner_up": verdict.runner_up,
        "interval_of": ("the range over the rounds of the best model's advantage over the "
                        "runner-up (round-paired ratios, above 1 when it leads); not a "
                        "confidence interval"),
        "test": {m: {"p": _number(t.p), "effect": _number(t.effect), "pairs": t.pairs,
                     "tie": verdict.tie_reasons.get(m)} for m, t in verdict.tests.items()},
        "holm_level": _number(verdict.level),
        "holm_family": verdict.family,
        "advantage": _number(verdict.advantage),
        "small_effect": verdict.small_effect,
        "minimum_effect": verdict.margin,
        "client_bound": verdict.client_bound,
        "lower_bounds": {m: _number(c.value) for m, c in workload.cells.items()
                         if c.status == "bound"},
        "ratio_to_native_is_upper_bound": workload.native_upper_bound,
        "left_out": {m: c.note for m, c in workload.cells.items() if c.status == "missing"},
        "basis": verdict.basis,
        "note": verdict.note,
    }


def answer(items: list[Workload], sure: Assurance, run_id: str) -> dict[str, Any]:
    """The answer.json document."""
    return {
        "format": ANSWER_FORMAT,
        "run_id": run_id,
        "repetitions": {"min": sure.repetitions[0], "max": sure.repetitions[1]},
        "cells": {"total": sure.cells_total, "valid": sure.cells_valid,
                  "per_case": {case: {"total": total, "valid": valid}
                               for case, (valid, total) in sure.per_case.items()}},
        "client_saturated_trials": sure.saturated,
        # trials with figures left out or not ranked, by validity.REASON_KINDS
        "left_out_trials": sure.left_out,
        "noisy_reference": {"limit": NOISE_LIMIT, "cases": sure.noisy},
        "trials": sure.trials,
        "per_request_error_limit": PER_REQUEST_ERROR_LIMIT,
        "calibration": sure.calibration,
        "workloads": [workload_entry(w) for w in items],
    }


def write_answer(run_dir: Path, items: list[Workload], sure: Assurance, run_id: str) -> Path:
    """RUN_DIR/answer.json, atomically."""
    path = Path(run_dir) / "answer.json"
    atomic_write_json(path, answer(items, sure, run_id))
    return path
