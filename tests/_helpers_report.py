"""Synthetic run folders for the report's tests: trial records made by the runner's own record
code (``base_record``, ``derive``, ``failed_record`` in bench/run/trial.py) from real
``TrialSpec``s, carrying real encoded HdrHistograms, so the report reads exactly what a real run
gives it; and the run folder they go in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.environment import Placement
from bench.run.context import TrialContext
from bench.run.trial import base_record, derive, failed_record
from bench.store import FORMAT, Case, ModelSpec, TrialSpec

SLO_MS = 5.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"  # the first bytes of every PNG file


def lognormal_latencies(p50_us: float, rng: np.random.Generator, count: int = 400) -> np.ndarray:
    """Lognormal latencies (µs) around ``p50_us``, at two significant digits."""
    samples = rng.lognormal(np.log(p50_us), 0.5, count)
    scale = 10.0 ** (np.floor(np.log10(samples)) - 1)
    return np.maximum(1, np.round(samples / scale) * scale).astype(int)


def hdr_histogram(samples: np.ndarray) -> HdrHistogram:
    histogram = HdrHistogram(1, 60_000_000, 3)
    values, counts = np.unique(samples, return_counts=True)
    for value, times in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, times)
    return histogram


def make_spec(case: str, group: str, model: str, repeat: int, connections: int, *,
              mode: str = "closed", rate: float | None = None, fraction: float | None = None,
              mix: str = "echo:64", slo_ms: float = SLO_MS, tag: str | None = None
              ) -> TrialSpec:
    """The spec the runner would have run (a ``model@tag`` label under an interpreter tag)."""
    point = Case(name=case, group=group, mix=mix, payload_bytes=64, connections=connections,
                 mode=mode, pipeline=1, rate=rate, fraction=fraction, base=None, duration_s=2.0,
                 warmup_s=0.5, timeout_s=5.0, workers=0, slo_p99_ms=slo_ms)
    label = f"{model}@{tag}" if tag else model
    return TrialSpec(point, ModelSpec(label, model, (), "python3", tag), repeat)


def _context(tag: str | None, gil: bool | None) -> TrialContext:
    described = {tag: {"version": "3.13.0", "gil_enabled": gil}} if tag else {}
    return TrialContext(placement=Placement("split", (0,), (1,)), work_dir=Path("unused"),
                        run_id="synthetic", interpreters=described)


def make_trial(
    case: str, group: str, model: str, repeat: int, connections: int, throughput: float,
    *, p50_us: float = 200.0, mode: str = "closed", rate: float | None = None,
    fraction: float | None = None, saturated: bool = False, errors: int = 0,
    failure: str | None = None, mix: str = "echo:64", seed: int = 0, slo_ms: float = SLO_MS,
    tag: str | None = None, gil: bool | None = None,
) -> dict[str, Any]:
    """A trial record as the runner writes it, with a real encoded histogram."""
    spec = make_spec(case, group, model, repeat, connections, mode=mode, rate=rate,
                     fraction=fraction, mix=mix, slo_ms=slo_ms, tag=tag)
    context = _context(tag, gil)
    if failure:
        record = failed_record(spec, context, failure)
        record["stderr_tail"] = "Traceback (most recent call last):\nMemoryError: boom"
        return record
    samples = lognormal_latencies(p50_us, np.random.default_rng(seed))
    histogram = hdr_histogram(samples)  # figures from the samples: hdrh's queries are slow
    latency = {name: float(np.percentile(samples, p)) for name, p in
               (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))}
    latency.update(max=float(samples.max()), mean=float(samples.mean()))
    # a window long enough for the p99 to be ranked (100 samples beyond it: validity.py)
    duration = max(2.0, 12_000 / throughput) if throughput > 0 else 2.0
    requests = int(throughput * duration)
    swarm = {
        "mode": mode, "connections": connections, "requests": requests, "duration_s": duration,
        "throughput_rps": throughput, "errors": {"timeout": errors} if errors else {},
        "latency_us": latency, "histogram_unit": "us",
        "histogram": histogram.encode().decode("ascii"),
        "client": {"cpu_percent": [95.0 if saturated else 40.0], "saturated": saturated},
    }
    # one CPU second per second, 20 MB of growth, 0.1 context switches per request
    server = {"span_s": 2.0, "cpu_user_s": 1.5, "cpu_system_s": 0.5, "cpu_percent": 99.0,
              "ctx_switches": 0.2 * throughput, "rss_idle": 1_000_000, "rss_max": 21_000_000,
              "threads_max": 1, "fds_max": 8 + connections}
    record = base_record(spec, context)
    record.update(status="ok", wall_s=3.0, swarm=swarm, server=server,
                  derived=derive(swarm, server, spec.sockets))
    return record


def write_run(folder: Path, records: list[dict[str, Any]], spec: dict[str, Any]) -> Path:
    """A run folder: run.json with the plan, and one trials/<id>.json per record."""
    (folder / "trials").mkdir(parents=True)
    meta = {
        "format": FORMAT, "run_id": "synthetic", "scenario": "synthetic", "scenario_spec": spec,
        "environment": {"python": "CPython 3.11.7", "gil": True, "cpu_count": 2,
                        "packages": {"psutil": "5.9", "pandas": "2.2"}},
        "started_at": "2024-01-01T00:00:00Z", "finished_at": "2024-01-01T00:10:00Z",
        "status": "complete", "plan": [r["trial_id"] for r in records],
    }
    (folder / "run.json").write_text(json.dumps(meta))
    for record in records:
        (folder / "trials" / f"{record['trial_id']}.json").write_text(json.dumps(record))
    return folder


def echo_run(folder: Path, rates: dict[str, float]) -> Path:
    """A run folder of one closed-loop echo trial (64 bytes, 16 connections) per model, at
    ``rates``' throughput: the smallest run a report section can stand on."""
    records = [make_trial("echo64-c16-closed", "echo", model, 1, 16, rate)
               for model, rate in rates.items()]
    return write_run(folder, records, {"name": "synthetic"})
