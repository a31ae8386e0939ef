"""The report: summary.csv, charts, verdicts, flags and a self-contained HTML, from synthetic runs.

Run folders are built in tmp paths with trial records shaped like the runner's (see
bench/run/runner.py), carrying real encoded HdrHistograms, so the report reads exactly what a real
run gives it.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hdrh.histogram import HdrHistogram

from bench import cli
from bench.analysis import stats
from bench.report import document as report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLO_MS = 5.0


# ---------------------------------------------------------------- synthetic records


def _latencies(p50_us: float, rng: np.random.Generator, count: int = 400) -> np.ndarray:
    """Lognormal latencies (µs) around ``p50_us``, at two significant digits."""
    samples = rng.lognormal(np.log(p50_us), 0.5, count)
    scale = 10.0 ** (np.floor(np.log10(samples)) - 1)
    return np.maximum(1, np.round(samples / scale) * scale).astype(int)


def _histogram(samples: np.ndarray) -> HdrHistogram:
    histogram = HdrHistogram(1, 60_000_000, 3)
    values, counts = np.unique(samples, return_counts=True)
    for value, times in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, times)
    return histogram


def make_trial(
    case: str, group: str, model: str, repeat: int, connections: int, throughput: float,
    *, p50_us: float = 200.0, mode: str = "closed", rate: float | None = None,
    fraction: float | None = None, saturated: bool = False, errors: int = 0,
    failure: str | None = None, mix: str = "echo:64", seed: int = 0,
) -> dict[str, Any]:
    """A trial record as the runner writes it, with a real encoded histogram."""
    record: dict[str, Any] = {
        "trial_id": f"{case}--{model}--r{repeat}", "run_id": "synthetic", "case": case,
        "group": group, "model": model, "model_args": [], "interpreter": "python3",
        "repeat": repeat, "connections": connections, "mix": mix, "payload_bytes": 64,
        "mode": mode, "pipeline": 1, "rate": rate, "offered_fraction": fraction,
        "duration_s": 2.0, "warmup_s": 0.5, "placement": "split",
        "status": "failed" if failure else "ok", "failure": failure,
        "stderr_tail": "Traceback (most recent call last):\nMemoryError: boom" if failure else None,
        "started_at": "2024-01-01T00:00:00Z", "wall_s": 3.0, "swarm": None, "server": None,
        "derived": None,
    }
    if failure:
        return record
    samples = _latencies(p50_us, np.random.default_rng(seed))
    histogram = _histogram(samples)  # figures from the samples: hdrh's queries are slow
    latency = {name: float(np.percentile(samples, p)) for name, p in
               (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))}
    latency.update(max=float(samples.max()), mean=float(samples.mean()))
    requests = int(throughput * 2.0)
    record["swarm"] = {
        "mode": mode, "connections": connections, "requests": requests,
        "throughput_rps": throughput, "errors": {"timeout": errors} if errors else {},
        "latency_us": latency, "histogram_unit": "us",
        "histogram": histogram.encode().decode("ascii"),
        "client": {"cpu_percent": [95.0 if saturated else 40.0], "saturated": saturated},
    }
    record["derived"] = {
        "throughput_rps": throughput, "p50_us": latency["p50"], "p90_us": latency["p90"],
        "p99_us": latency["p99"], "p99_9_us": latency["p99_9"],
        "max_us": latency["max"], "mean_us": latency["mean"],
        "cpu_us_per_request": 1e6 / throughput, "rss_per_connection_bytes": 2e7 / connections,
        "ctx_switches_per_request": 0.1, "error_rate": errors / requests, "errors": errors,
        "client_saturated": saturated, "server_cpu_percent": 99.0, "requests": requests,
    }
    return record


def write_run(folder: Path, records: list[dict[str, Any]], spec: dict[str, Any]) -> Path:
    """A run folder: run.json with the plan, and one trials/<id>.json per record."""
    (folder / "trials").mkdir(parents=True)
    meta = {
        "run_id": "synthetic", "scenario": "synthetic", "scenario_spec": spec,
        "environment": {"python": "CPython 3.11.7", "gil": True, "cpu_count": 2,
                        "packages": {"psutil": "5.9", "pandas": "2.2"}},
        "started_at": "2024-01-01T00:00:00Z", "finished_at": "2024-01-01T00:10:00Z",
        "status": "complete", "plan": [r["trial_id"] for r in records],
    }
    (folder / "run.json").write_text(json.dumps(meta))
    for record in records:
        (folder / "trials" / f"{record['trial_id']}.json").write_text(json.dumps(record))
    return folder


ECHO_MEANS = {  # case -> model -> median throughput
    "echo64-c1-closed": {"threaded": 9000, "epoll": 10000, "asyncio": 7000, "native": 20000},
    "echo64-c16-closed": {"threaded": 20000, "epoll": 50000, "asyncio": 30000, "native": 150000},
    "echo64-c128-closed": {"threaded": 15000, "epoll": 40000, "asyncio": 40200,
                           "native": 160000},
}
SWEEP = {  # model -> [(fraction, rate, p99-ish p50 µs)]
    "epoll": [(0.1, 5000, 60), (0.5, 25000, 150), (0.9, 45000, 900), (1.1, 55000, 30000)],
    "asyncio": [(0.1, 3000, 80), (0.5, 15000, 300), (0.9, 27000, 4000), (1.1, 33000, 60000)],
}


def full_records() -> list[dict[str, Any]]:
    """Three models and native, three repetitions of echo, one of work, a sweep, and faults."""
    records, seed = [], 0
    for repeat in range(3):
        for case, models in ECHO_MEANS.items():
            connections = int(case.split("-c")[1].split("-")[0])
            for model, mean in models.items():
                seed += 1
                noise = {0: -0.01, 1: 0.0, 2: 0.012}[repeat] * mean
                kwargs: dict[str, Any] = {}
                if case == "echo64-c128-closed" and model == "native" and repeat == 2:
                    kwargs = {"saturated": True}
                    noise = 9e6  # a saturated trial's figure must never reach a median
                if case == "echo64-c128-closed" and model == "threaded" and repeat == 1:
                    kwargs = {"errors": 5}
                records.append(make_trial(case, "echo", model, repeat, connections,
                                          mean + noise, p50_us=1e6 * connections / mean,
                                          seed=seed, **kwargs))
        records.append(make_trial("echo64-c16-closed", "echo", "select", repeat, 16, 0,
                                  failure="server exited with code 1 before READY"))
    for model, mean in {"epoll": 1000, "asyncio": 980, "threaded": 800}.items():
        records.append(make_trial("work-c16-closed", "cpu", model, 0, 16, mean, p50_us=16000,
                                  mix="work:20000"))
    for model, points in SWEEP.items():
        for fraction, rate, p50 in points:
            seed += 1
            records.append(make_trial(
                f"sweep-c50-open-r{round(fraction * 100)}pct", "sweep", model, 0, 50, rate,
                p50_us=p50, mode="open", rate=rate, fraction=fraction, seed=seed))
    return records


SPEC = {"name": "synthetic", "sweep": {"connections": 50, "slo_p99_ms": SLO_MS}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> report.Report:
    folder = write_run(tmp_path_factory.mktemp("run"), full_records(), SPEC)
    return report.build_report(folder)


# ---------------------------------------------------------------- summary.csv


def test_summary_csv_has_one_row_per_trial_with_flags(rendered: report.Report) -> None:
    frame = pd.read_csv(rendered.paths["summary"])
    assert len(frame) == len(list((rendered.run.run_dir / "trials").glob("*.json"))) == 50
    for column in ("trial_id", "case", "group", "model", "model_args", "interpreter", "repeat",
                   "connections", "mix", "mode", "pipeline", "rate", "offered_fraction",
                   "status", "failure", "throughput_rps", "p99_us", "cpu_us_per_request",
                   "rss_per_connection_bytes", "error_rate", "client_saturated", "has_errors",
                   "excluded", "flags"):
        assert column in frame.columns, column
    rows = frame.set_index("trial_id")
    saturated = rows.loc["echo64-c128-closed--native--r2"]
    assert bool(saturated["client_saturated"]) and bool(saturated["excluded"])
    assert stats.MARK_SATURATED in saturated["flags"]
    errored = rows.loc["echo64-c128-closed--threaded--r1"]
    assert bool(errored["has_errors"]) and stats.MARK_ERRORS in errored["flags"]
    assert "timeout=5" in errored["error_kinds"]
    failed = rows.loc["echo64-c16-closed--select--r0"]
    assert failed["status"] == "failed" and "before READY" in failed["failure"]
    clean = rows.loc["echo64-c16-closed--epoll--r1"]
    assert not bool(clean["excluded"]) and clean["throughput_rps"] == 50000
    assert int(frame["excluded"].sum()) == 2 + 3  # saturated + errors + three failed


# ---------------------------------------------------------------- verdicts


def _verdict(rendered: report.Report, case: str) -> stats.Verdict:
    return next(v for v in rendered.verdicts if v.case == case)


def test_clear_winner_with_repetitions(rendered: report.Report) -> None:
    verdict = _verdict(rendered, "echo64-c16-closed")
    assert (verdict.best, verdict.runner_up, verdict.outcome) == ("epoll", "asyncio", "clear")
    assert "bootstrap" in verdict.basis
    assert verdict.native_value == 150000  # shown, but not competing


def test_tie_inside_the_noise_with_repetitions(rendered: report.Report) -> None:
    verdict = _verdict(rendered, "echo64-c128-closed")
    assert verdict.outcome == "tie"
    assert {verdict.best, *verdict.tied} == {"epoll", "asyncio"}
    assert verdict.excluded == 2
    assert verdict.native_value == np.median([160000 * 0.99, 160000])  # saturated r2 left out


def test_single_repetition_uses_the_stated_margin(rendered: report.Report) -> None:
    verdict = _verdict(rendered, "work-c16-closed")
    assert verdict.outcome == "tie" and verdict.tied == ["asyncio"]
    assert "single repetition: 5% tie margin" in verdict.basis
    strict = stats.closed_verdicts(rendered.run, margin=0.01)
    assert next(v for v in strict if v.case == "work-c16-closed").outcome == "clear"


def test_sweep_verdict_is_the_highest_rate_within_the_slo(rendered: report.Report) -> None:
    sweep = rendered.sweeps[0]
    assert sweep.slo_us == SLO_MS * 1000 and "sweep.slo_p99_ms" in sweep.slo_source
    verdict = _verdict(rendered, "sweep-c50-open")
    assert (verdict.best, verdict.best_value) == ("epoll", 45000)
    assert (verdict.runner_up, verdict.runner_up_value) == ("asyncio", 15000)
    assert verdict.outcome == "clear"


def test_compare_rules() -> None:
    assert stats.compare([100, 101, 102], [90, 91, 92], 0.05)[0] is False
    assert stats.compare([100, 110, 90], [99, 108, 92], 0.05)[0] is True
    assert stats.compare([100], [96], 0.05) == (True, stats.compare([100], [96], 0.05)[1])
    assert stats.compare([100], [94], 0.05)[0] is False
    assert stats.compare([100, 100], [100, 100], 0.05)[0] is True


def test_find_slo_units() -> None:
    assert stats.find_slo_us({"sweep": {"slo_p99_ms": 5}}) == (5000.0, "sweep.slo_p99_ms")
    assert stats.find_slo_us({"open": {"slo_p99_us": 800}})[0] == 800.0
    assert stats.find_slo_us({"sweeps": [{"slo": "2ms"}]})[0] == 2000.0
    assert stats.find_slo_us({"connections": [1, 16]}) is None


def test_sweep_slo_prefers_the_override_then_the_trials_then_the_spec() -> None:
    spec = {"sweep": {"slo_p99_ms": 5}}
    rows = pd.DataFrame({"slo_p99_ms": [2.0, 2.0]})
    assert stats.sweep_slo(rows, spec, 700.0)[0] == 700.0
    assert stats.sweep_slo(rows, spec)[0] == 2000.0
    assert stats.sweep_slo(pd.DataFrame({"slo_p99_ms": [None]}), spec)[0] == 5000.0
    assert stats.sweep_slo(pd.DataFrame(), {})[0] == stats.DEFAULT_SLO_US


# ---------------------------------------------------------------- flags and exclusions


def test_flagged_trials_are_marked_and_footnoted(rendered: report.Report) -> None:
    markdown = rendered.paths["markdown"].read_text()
    assert "threaded‡" in markdown and "native†" in markdown
    assert stats.MARK_NOTES[stats.MARK_SATURATED] in markdown
    assert stats.MARK_NOTES[stats.MARK_ERRORS] in markdown
    assert "5 of " in markdown and "excluded from every median" in markdown
    assert "## Flagged trials (excluded)" in markdown
    assert "echo64-c128-closed--native--r2" in markdown
    agg = stats.aggregate(rendered.run.frame).set_index(["case", "variant"])
    native = agg.loc[("echo64-c128-closed", "native")]
    assert (native["n_valid"], native["n_total"]) == (2, 3)
    assert native["throughput_rps_max"] < 1e6


def test_failed_trials_listed_with_stderr(rendered: report.Report) -> None:
    text = rendered.paths["html"].read_text()
    assert "server exited with code 1 before READY" in text
    assert "MemoryError: boom" in text
    assert "echo64-c16-closed--select--r2: stderr tail" in text


# ---------------------------------------------------------------- charts and HTML


def test_charts_are_valid_pngs(rendered: report.Report) -> None:
    names = {c.path.name for c in rendered.charts}
    assert names == {"throughput_vs_connections.png", "p99_vs_connections.png",
                     "cpu_per_request.png", "memory_per_connection.png",
                     "latency_spectrum.png", "mixes.png", "latency_vs_load.png"}
    for chart in rendered.charts:
        data = chart.path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, chart.path
    assert "echo64-c128-closed" in next(
        c.title for c in rendered.charts if c.path.name == "latency_spectrum.png")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                if tag == "img" and value.startswith("data:image/png;base64,"):
                    self.images.append(value)
                else:
                    self.external.append(value)


def test_html_is_self_contained(rendered: report.Report) -> None:
    parser = _Refs()
    parser.feed(rendered.paths["html"].read_text())
    assert parser.external == []
    assert len(parser.images) == len(rendered.charts)
    assert {"table", "style", "figure"} <= parser.tags
    assert "link" not in parser.tags and "script" not in parser.tags
    markdown = rendered.paths["markdown"].read_text()
    assert "![Throughput versus connections](charts/throughput_vs_connections.png)" in markdown
    assert "## Verdict" in markdown and "## Environment" in markdown


# ---------------------------------------------------------------- histograms


def test_percentile_curve_walks_to_the_maximum() -> None:
    samples = _latencies(500, np.random.default_rng(1), 5000)
    histogram = _histogram(samples)
    p50 = float(np.median(samples))
    swarm = {"histogram": histogram.encode().decode("ascii"), "latency_us": {"p50": p50}}
    decoded, scale = stats.decode_histogram(swarm)
    assert scale == 1.0 and decoded.get_total_count() == 5000
    levels, values = stats.percentile_curve(decoded, scale)
    assert np.all(np.diff(levels) > 0) and np.all(np.diff(values) >= 0)
    assert levels[-1] < 1.0 and values[-1] == decoded.get_highest_equivalent_value(samples.max())
    assert values[0] <= samples.min() * 1.001
    assert abs(np.interp(0.5, levels, values) / p50 - 1) < 0.1
    assert stats.decode_histogram({**swarm, "latency_us": {"p50": p50 / 1000}})[1] == 1e-3
    assert stats.decode_histogram({**swarm, "histogram_unit": "ns"})[1] == 1e-3


# ---------------------------------------------------------------- partial runs and the CLI


def test_partial_run_renders_what_it_has(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = [make_trial("echo64-c16-closed", "echo", m, 0, 16, t)
               for m, t in (("epoll", 5000), ("asyncio", 2000), ("native", 3000))]
    folder = write_run(tmp_path / "run", records, {"name": "quick"})
    meta = json.loads((folder / "run.json").read_text())
    meta.update(status="interrupted", plan=meta["plan"] + ["echo64-c1-closed--epoll--r0"])
    meta["environment"].update(load_average_before=[3.5, 2.0, 1.0], load_average_after=[4.0])
    (folder / "run.json").write_text(json.dumps(meta))
    assert cli.main(["report", str(folder), "--spectrum-case", "nope"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "epoll" in out and "report.html" in out and "machine was busy" in out
    text = (folder / "report.md").read_text()
    assert "3 trial records of 4 planned" in text and "incomplete" in text
    assert "faster than the native ceiling" in text and "machine was busy" in text
    assert "requested point 'nope' has no valid trial" in text
    assert (folder / "charts" / "throughput_vs_connections.png").exists()
    assert not (folder / "charts" / "latency_vs_load.png").exists()


def test_a_run_without_records_still_renders(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", [], {"name": "quick"})
    (folder / "trials" / "half.json").write_text("{bad")
    text = report.render_report(folder).read_text()
    assert "No trial records yet." in text and "half.json" in text
    assert pd.read_csv(folder / "summary.csv").empty


def test_cli_rejects_a_folder_without_run_json(tmp_path: Path) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


def test_sweep_walk_stops_at_slo_misses_and_flagged_points(tmp_path: Path) -> None:
    records = []
    for model, p50s, saturated_at in (("epoll", [1000, 1000, 1000], 0.9),
                                      ("asyncio", [30000, 100, 100], None)):
        for (fraction, p50) in zip((0.1, 0.5, 0.9), p50s, strict=True):
            records.append(make_trial(
                f"sweep-c16-open-r{round(fraction * 100)}pct", "sweep", model, 0, 16,
                fraction * 1e4, p50_us=p50, mode="open", rate=fraction * 1e4,
                fraction=fraction, saturated=fraction == saturated_at))
    run = stats.load_run(write_run(tmp_path / "run", records, SPEC))
    (sweep,) = stats.sweep_results(run)
    assert sweep.within_slo == {"epoll": [5000.0], "asyncio": [0.0]}
    assert sweep.ceiling_not_found == {"epoll": False, "asyncio": False}
    (verdict,) = stats.sweep_verdicts([sweep])
    assert (verdict.best, verdict.best_value, verdict.outcome) == ("epoll", 5000.0, "clear")
    (nobody,) = stats.sweep_results(run, slo_override_us=10.0)
    assert stats.sweep_verdicts([nobody])[0].outcome == "none"
