"""``python -m bench calibrate``: how long must one regression sample be, here?

Runs same-code samples (the head's servers only, the regression check's sampler) for several
sample durations, taking turns so that a noisy spell touches every duration alike, and prints
per model and duration: the coefficient of variation (robust: 1.4826 x MAD / median) of
throughput and of server CPU per request, the wall time per sample, and the same-code noise
that a check with N/2 samples per side would see (``bench.regress.stats.same_code_noise``,
the first half against the second).
The profile's sample length is the shortest one past which the spread stops falling much.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
from scipy import stats

from bench.regress import check as regress
from bench.regress import stats as rs


def robust_cv(values: list[float]) -> float:
    """1.4826 x median absolute deviation / median (the CV, robust to a stray sample)."""
    if len(values) < 2:
        return float("nan")
    return float(stats.median_abs_deviation(values, scale="normal") / np.median(values))


def calibrate(models: list[str], durations: list[float], samples: int, warmup: float,
              case: regress.GateCase) -> list[dict[str, object]]:
    """Samples per (model, duration), taking turns; one row of figures per pair."""
    sampler = regress.default_sampler()
    source = regress.ServerSource("head", regress.ROOT, "working tree")
    found: dict[tuple[str, float], list[regress.Sample]] = {}
    try:
        for index in range(samples):
            for model in models:
                for duration in durations:
                    profile = regress.Profile("calibrate", None, (case,), samples,
                                              duration_s=duration, warmup_s=warmup)
                    sample = sampler(source, model, case, profile, index)
                    found.setdefault((model, duration), []).append(sample)
                    regress.stderr_progress(f"{model} {duration:g}s {index + 1}/{samples}: "
                                            + regress.describe(sample))
    finally:
        close = getattr(sampler, "close", None)
        if close is not None:
            close()
    return [row(model, duration, found[(model, duration)]) for model in models
            for duration in durations]


def row(model: str, duration: float, samples: list[regress.Sample]) -> dict[str, object]:
    good = [s for s in samples if s.ok and s.throughput_rps]
    rates = [s.throughput_rps or 0.0 for s in good]
    cpus = [s.cpu_us_per_request for s in good if s.cpu_us_per_request]
    half = len(good) // 2
    return {
        "model": model, "duration_s": duration, "samples": len(good),
        "failed": len(samples) - len(good),
        "median_rps": float(np.median(rates)) if rates else float("nan"),
        "cv_throughput": robust_cv(rates), "cv_cpu": robust_cv(cpus),
        "noise_throughput": rs.same_code_noise([1 / r for r in rates[:half]],
                                               [1 / r for r in rates[half:]]),
        "noise_cpu": rs.same_code_noise(cpus[:half], cpus[half:]),
        "wall_s": float(np.mean([s.wall_s for s in samples])),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| model | sample s | n | median req/s | CV req/s | CV CPU/req | noise req/s | "
             "noise CPU/req | wall s/sample |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['duration_s']:g} | {r['samples']} | "
                     f"{r['median_rps']:,.0f} | {r['cv_throughput']:.1%} | {r['cv_cpu']:.1%} | "
                     f"{r['noise_throughput']:.1%} | {r['noise_cpu']:.1%} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``calibrate`` verb's options."""
    parser.add_argument("--models", default="threaded,epoll,asyncio")
    parser.add_argument("--durations", default="0.5,1,2,4", help="sample lengths, seconds")
    parser.add_argument("--samples", type=int, default=8, help="per model and duration")
    parser.add_argument("--warmup", type=float, default=0.3)


def run(options: argparse.Namespace) -> int:
    """Measure same-code noise per model and sample length; print the table."""
    profile = replace(regress.PROFILES["quick"], warmup_s=options.warmup)
    started = time.monotonic()
    rows = calibrate([m for m in options.models.split(",") if m],
                     [float(d) for d in options.durations.split(",")], options.samples,
                     profile.warmup_s, profile.cases[0])
    sys.stdout.write(table(rows))
    print(f"wall time {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0
