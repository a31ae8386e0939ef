"""``python -m bench baseline save|compare``: a per-machine trend baseline, for warnings only.

``save`` measures the head's servers (the regression check's sampler and profile, no base side)
and appends the samples to ``results/baseline/<machine>.json``, the machine being a fingerprint
of CPU model, core count, kernel and Python. ``compare`` measures again and compares with the
latest saved entry for this machine using the regression check's statistics, printing a
Markdown table with a WARNING for a model that got slower beyond the threshold. Absolute numbers
from another day never gate a build: ``compare`` exits 0 whatever it finds (2 only when it
cannot measure at all).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.environment import cpu_model
from bench.regress import check as regress
from bench.regress import stats as rs
from bench.regress.summary import emit
from bench.regress.verdict import EXIT_PASS
from bench.store import RESULTS_ROOT, atomic_write_json

BASELINE_DIR = RESULTS_ROOT / "baseline"
KEEP_ENTRIES = 50
DEFAULT_SAMPLES = 5


def fingerprint() -> dict[str, Any]:
    """What makes numbers from this machine comparable with each other."""
    return {"cpu_model": cpu_model(), "cores": len(os.sched_getaffinity(0)),
            "kernel": platform.release(), "python": platform.python_implementation() + " "
            + platform.python_version(), "machine": platform.machine()}


def machine_key(print_: dict[str, Any]) -> str:
    """A file-name-safe key: a readable prefix plus a hash of the whole fingerprint."""
    digest = hashlib.sha256(json.dumps(print_, sort_keys=True).encode()).hexdigest()[:10]
    words = f"{print_['cpu_model']}-{print_['cores']}c-{print_['python']}"
    slug = re.sub(r"[^a-z0-9.]+", "-", words.lower()).strip("-")[:60]
    return f"{slug}-{digest}"


def baseline_path(directory: Path = BASELINE_DIR) -> Path:
    return directory / f"{machine_key(fingerprint())}.json"


def measure(sampler: regress.Sampler, profile: regress.Profile, models: list[str],
            progress: regress.Progress) -> dict[str, dict[str, dict[str, list[float]]]]:
    """case -> model -> {"throughput_rps": [...], "cpu_us_per_request": [...]}, models taking
    turns so that a slow spell of the machine touches them all alike."""
    source = regress.ServerSource("head", regress.ROOT, "working tree")
    found: dict[str, dict[str, dict[str, list[float]]]] = {}
    for case in profile.cases:
        per_model = found.setdefault(case.name, {})
        for index in range(profile.samples):
            for model in models:
                sample = sampler(source, model, case, profile, index)
                progress(f"{model} {case.name} {index + 1}/{profile.samples}: "
                         + regress.describe(sample))
                figures = per_model.setdefault(model, {"throughput_rps": [],
                                                       "cpu_us_per_request": []})
                if sample.ok and sample.throughput_rps:
                    figures["throughput_rps"].append(sample.throughput_rps)
                if sample.ok and sample.cpu_us_per_request:
                    figures["cpu_us_per_request"].append(sample.cpu_us_per_request)
    return found


def head_models(profile: regress.Profile, requested: list[str] | None,
                strict: bool = True) -> list[str]:
    """The models to measure: those asked for (or the profile's) that can run here; unknown
    names are an error when ``strict``, else passed over (a model since removed)."""
    available = regress.probe_models(regress.ROOT)
    wanted = requested or list(profile.models or available)
    unknown = [m for m in wanted if m not in available]
    if unknown and strict:
        raise regress.CannotRun(f"unknown model(s): {', '.join(unknown)}")
    return [m for m in wanted if available.get(m, "unknown") is None]


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"fingerprint": fingerprint(), "entries": []}
    return json.loads(path.read_text())


def save_entry(path: Path, entry: dict[str, Any]) -> None:
    data = load(path)
    data["entries"] = [*data["entries"], entry][-KEEP_ENTRIES:]
    atomic_write_json(path, data, indent=2)


def new_entry(profile: regress.Profile, figures: dict[str, Any]) -> dict[str, Any]:
    sha = regress.git("rev-parse", "HEAD").strip()
    return {"saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": {"sha": sha, "dirty": regress.is_dirty()},
            "profile": {"name": profile.name, "samples": profile.samples,
                        "duration_s": profile.duration_s, "warmup_s": profile.warmup_s,
                        "cases": [c.__dict__ for c in profile.cases]},
            "figures": figures}


def compare_table(saved: dict[str, Any], now: dict[str, Any], threshold: float) -> tuple[
        str, int]:
    """Markdown rows comparing the saved figures with today's, and how many warnings."""
    lines = ["| case | model | saved req/s | now req/s | time/req change [95% CI] | "
             "CPU/req change | trend |", "|---|---|---:|---:|---|---|---|"]
    warnings = 0
    for case, models in now["figures"].items():
        for model, figures in models.items():
            old = saved["figures"].get(case, {}).get(model)
            if old is None:
                lines.append(f"| {case} | {model} | | | | | not in the baseline |")
                continue
            rate = rs.compare_throughput(old["throughput_rps"], figures["throughput_rps"],
                                         threshold=threshold)
            cpu = rs.compare_costs("cpu_per_request", old["cpu_us_per_request"],
                                   figures["cpu_us_per_request"], threshold=threshold)
            trend = trend_word(rate, cpu)
            warnings += trend.startswith("WARNING")
            lines.append(f"| {case} | {model} | {_median(old['throughput_rps'])} | "
                         f"{_median(figures['throughput_rps'])} | {_change(rate, True)} | "
                         f"{_change(cpu, False)} | {trend} |")
    return "\n".join(lines), warnings


def trend_word(rate: rs.MetricComparison | None, cpu: rs.MetricComparison | None) -> str:
    metrics = [m for m in (rate, cpu) if m is not None]
    if not metrics:
        return "too few samples"
    if any(m.flagged for m in metrics):
        return "WARNING: slower than the baseline"
    if any(m.faster for m in metrics):
        return "faster than the baseline"
    return "steady"


def _median(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:,.0f}" if ordered else "n/a"


def _change(metric: rs.MetricComparison | None, with_ci: bool) -> str:
    if metric is None:
        return "n/a"
    text = f"{metric.slowdown:+.1%}"
    if with_ci:
        text += f" [{metric.ci_low - 1:+.1%}, {metric.ci_high - 1:+.1%}]"
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("save", "compare"))
    parser.add_argument("--profile", choices=sorted(regress.PROFILES), default="quick")
    parser.add_argument("--models", help="comma-separated models (default: the profile's)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help=f"samples per model (default {DEFAULT_SAMPLES})")
    parser.add_argument("--threshold", type=float, default=rs.DEFAULT_THRESHOLD)
    parser.add_argument("--dir", type=Path, default=BASELINE_DIR,
                        help="where baselines live (default results/baseline/)")


def run(options: argparse.Namespace,
        make_sampler: regress.SamplerFactory = regress.default_sampler) -> int:
    """``save`` or ``compare``; 0 unless nothing could be measured (2)."""
    if options.samples < rs.MIN_SAMPLES:
        print(f"--samples must be at least {rs.MIN_SAMPLES}", file=sys.stderr)
        return regress.EXIT_CANNOT_RUN
    profile = replace(regress.PROFILES[options.profile], samples=options.samples)
    path = baseline_path(options.dir)
    saved = load(path)["entries"]
    if options.action == "compare" and not saved:
        emit(f"No baseline for this machine yet ({path.name}); "
             "`python -m bench baseline save` makes one. Nothing to compare.\n")
        return EXIT_PASS
    requested = [m for m in options.models.split(",") if m] if options.models else None
    from_baseline = options.action == "compare" and requested is None
    if from_baseline:
        requested = sorted({m for models in saved[-1]["figures"].values() for m in models})
    try:
        models = head_models(profile, requested, strict=not from_baseline)
        figures = measure(make_sampler(), profile, models, regress.stderr_progress)
    except regress.CannotRun as error:
        print(f"baseline: cannot run: {error}", file=sys.stderr)
        return regress.EXIT_CANNOT_RUN
    if not any(f["throughput_rps"] for case in figures.values() for f in case.values()):
        print("baseline: no sample succeeded", file=sys.stderr)
        return regress.EXIT_CANNOT_RUN
    entry = new_entry(profile, figures)
    if options.action == "save":
        save_entry(path, entry)
        emit(f"Baseline saved: {path} (entry {len(load(path)['entries'])}).\n")
        return EXIT_PASS
    table, warnings = compare_table(saved[-1], entry, options.threshold)
    emit(f"### Trend against this machine's baseline (saved {saved[-1]['saved_at']}, "
         f"{saved[-1]['git']['sha'][:10]})\n\n{table}\n\n"
         f"{warnings} warning(s); trend warnings never fail a build.\n")
    return EXIT_PASS
