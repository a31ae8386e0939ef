"""How sure the answer is (``assurance``): repetitions, valid cells, the client's saturation,
the machine's load and calibration, and whether the reference moved across the rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.analysis import validity
from bench.analysis.frames import Run, is_native, valid_figures


@dataclass
class Assurance:
    """How sure the answer is: repetitions, valid cells, the client, the machine."""

    repetitions: tuple[int, int]  # fewest and most trials of a (case, model)
    cells_total: int
    cells_valid: int
    per_case: dict[str, tuple[int, int]]  # case -> (valid, total) (case, model, metric) cells
    trials: int
    saturated: int  # trials whose client saturated
    saturated_models: list[str]
    load_before: list[float] | None
    load_after: list[float] | None
    cpus: int | None
    calibration: str
    left_out: dict[str, int] = field(default_factory=dict)  # trials per validity reason kind
    # case -> the reference model's spread over the rounds ((max - min) / median of its
    # valid throughput) where it passes NOISE_LIMIT: the machine drifted within the run
    noisy: dict[str, float] = field(default_factory=dict)


def assurance(run: Run) -> Assurance:
    """Count repetitions and valid (case, model, metric) cells; read the machine's state."""
    frame = run.frame
    env = run.meta.get("environment") or {}
    per_case: dict[str, tuple[int, int]] = {}
    reps = [0]
    if not frame.empty:
        counts = frame.groupby(["case", "variant"], sort=False)["trial_id"].size()
        reps = counts.tolist()
        for case, rows in frame.groupby("case", sort=False):
            per_case[str(case)] = _valid_cells(rows)
    saturated = frame[frame["client_saturated"]] if not frame.empty else frame
    return Assurance(
        repetitions=(int(min(reps)), int(max(reps))),
        cells_total=sum(t for _, t in per_case.values()),
        cells_valid=sum(v for v, _ in per_case.values()), per_case=per_case,
        trials=len(frame), saturated=len(saturated),
        saturated_models=list(dict.fromkeys(saturated["variant"].astype(str)))
        if not saturated.empty else [],
        load_before=env.get("load_average_before"), load_after=env.get("load_average_after"),
        cpus=env.get("cpu_count"), calibration=calibration_line(env.get("calibration")),
        left_out=validity.reason_counts(frame), noisy=reference_noise(frame))


NOISE_LIMIT = 0.10  # the reference's spread over the rounds above which a run is noisy


def reference_noise(frame: pd.DataFrame) -> dict[str, float]:
    """Per closed-loop case, native's spread over the rounds where it passes NOISE_LIMIT:
    the same C server, so what moves it is the machine (its valid throughputs only)."""
    if frame.empty:
        return {}
    rows = valid_figures(frame[(frame["mode"] != "open") & frame["variant"].map(is_native)])
    noisy = {}
    for case, group in rows.groupby("case", sort=False):
        values = group["throughput_rps"].dropna()
        if len(values) >= 2 and values.median() > 0:
            spread = float((values.max() - values.min()) / values.median())
            if spread > NOISE_LIMIT:
                noisy[str(case)] = round(spread, 3)
    return noisy


def _valid_cells(rows: pd.DataFrame) -> tuple[int, int]:
    """(valid, total) cells of one case: a (model, metric) is valid when any repetition's
    figure is valid."""
    valid = total = 0
    for _, group in rows.groupby("variant", sort=False):
        for metric in validity.CELL_METRICS:
            total += 1
            ok = group[validity.ok_column(metric)] & group[metric].notna() \
                if metric in group else pd.Series([False])
            valid += bool(ok.any())
    return valid, total


def calibration_line(calibration: dict[str, Any] | None) -> str:
    """The run's machine calibration (bench/run/calibration.py measures it) in one line: what
    ``bench run`` prints at the start and the report's "how sure" shows."""
    if not calibration:
        return "no calibration recorded"
    parts = []
    loop = calibration.get("python_loop") or {}
    if "alone" in loop:
        alone = ", ".join(f"CPU {cpu} {rate / 1e6:.2f}M" for cpu, rate in loop["alone"].items())
        together = sum(loop["all_at_once"].values()) / max(1, sum(loop["alone"].values()))
        parts.append(f"Python loop {alone} WORK iterations/s (all CPUs at once: "
                     f"{together:.0%} of alone)")
    elif "error" in loop:
        parts.append(f"Python loop: {loop['error']}")
    if "pingpong_same_cpu_per_s" in calibration:
        text = f"round trips {calibration['pingpong_same_cpu_per_s'] / 1e3:.0f}k/s on one CPU"
        if "pingpong_two_cpus_per_s" in calibration:
            text += f", {calibration['pingpong_two_cpus_per_s'] / 1e3:.0f}k/s across two"
        parts.append(text)
    if "syscall_ns" in calibration:
        parts.append(f"a system call {calibration['syscall_ns']:.0f} ns")
    if "native_error" in calibration:
        parts.append(f"C part: {calibration['native_error']}")
    return "; ".join(parts) or "no calibration recorded"
