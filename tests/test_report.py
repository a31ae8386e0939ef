"""The report: summary.csv, charts, verdicts, flags and a self-contained HTML, from synthetic runs.

Run folders are built in tmp paths from synthetic trial records (tests/_helpers_report.py: the
runner's own record code, real encoded HdrHistograms), so the report reads exactly what a real
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
from _helpers_report import (
    PNG_MAGIC,
    SLO_MS,
    hdr_histogram,
    lognormal_latencies,
    make_trial,
    write_run,
)

from bench import cli
from bench.analysis import frames, histograms, sweeps, validity, verdicts
from bench.report import document as report

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


SPEC = {"name": "synthetic", "slo_p99_ms": SLO_MS}


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
    assert validity.MARK_SATURATED in saturated["flags"]
    errored = rows.loc["echo64-c128-closed--threaded--r1"]
    assert bool(errored["has_errors"]) and validity.MARK_ERRORS in errored["flags"]
    assert "timeout=5" in errored["error_kinds"]
    failed = rows.loc["echo64-c16-closed--select--r0"]
    assert failed["status"] == "failed" and "before READY" in failed["failure"]
    clean = rows.loc["echo64-c16-closed--epoll--r1"]
    assert not bool(clean["excluded"]) and clean["throughput_rps"] == 50000
    assert int(frame["excluded"].sum()) == 2 + 3  # saturated + errors + three failed
    # validity per figure: the saturated trial keeps its server-side figures, not its own
    assert not saturated["ok_throughput_rps"] and not saturated["ok_p99_us"]
    assert saturated["ok_cpu_us_per_request"] and saturated["ok_rss_per_connection_bytes"]
    assert "client saturated" in saturated["exclusion_reason"]
    # five timeouts in 30,000 requests: latency and throughput out, CPU per request kept
    assert not errored["ok_p99_us"] and errored["ok_cpu_us_per_request"]
    assert not any(bool(failed[f"ok_{m}"]) for m in validity.JUDGED)


# ---------------------------------------------------------------- verdicts


def _verdict(rendered: report.Report, case: str) -> verdicts.CaseVerdict:
    return next(v for v in rendered.verdicts if v.case == case)


def test_three_rounds_cannot_make_a_winner_clear(rendered: report.Report) -> None:
    """epoll 1.67x asyncio in each of three rounds: the smallest two-sided signed-rank p of
    three pairs is 0.25, above any level: too few rounds to tell, not a win (nine rounds can:
    the tests of rank and settle below)."""
    verdict = _verdict(rendered, "echo64-c16-closed")
    assert (verdict.best, verdict.runner_up, verdict.outcome) == ("epoll", "asyncio", "tie")
    assert verdict.tie_reasons["asyncio"] == "rounds"
    assert verdict.tests["asyncio"].p == pytest.approx(0.25)
    assert "signed-rank" in verdict.basis and "Holm" in verdict.basis
    assert verdict.native_value == 150000  # shown, but not competing


def test_tie_inside_the_noise_with_repetitions(rendered: report.Report) -> None:
    verdict = _verdict(rendered, "echo64-c128-closed")
    assert verdict.outcome == "tie"
    assert {"epoll", "asyncio"} <= {verdict.best, *verdict.tied}
    assert verdict.excluded == 2
    assert verdict.native_value == np.median([160000 * 0.99, 160000])  # saturated r2 left out


def test_a_single_repetition_names_the_leader_unconfirmed(rendered: report.Report) -> None:
    """One repetition: no test, so no tie is declared by a margin; the leader is named and
    the outcome says it is unconfirmed, whatever the margin (only the minimum effect)."""
    verdict = _verdict(rendered, "work-c16-closed")
    assert (verdict.best, verdict.runner_up, verdict.outcome) == ("epoll", "asyncio",
                                                                  "unconfirmed")
    assert verdict.tied == [] and verdict.interval is None
    assert verdict.untested == ["asyncio", "threaded"]
    assert verdict.basis == "no test: fewer than 2 rounds paired"
    strict = verdicts.closed_verdicts(rendered.run, margin=0.01)
    assert next(v for v in strict if v.case == "work-c16-closed").outcome == "unconfirmed"


def test_verdicts_carry_the_range_of_their_round_ratios(rendered: report.Report) -> None:
    """The bracket is the range of the leader's round-by-round advantage over the runner-up
    (not a confidence interval): epoll 50,000 over asyncio 30,000 in every round."""
    verdict = _verdict(rendered, "echo64-c16-closed")
    low, high = verdict.interval
    assert 1.0 < low <= verdict.advantage <= high
    assert verdict.advantage == pytest.approx(50000 / 30000)
    assert low == pytest.approx(50000 / 30000) and high == pytest.approx(50000 / 30000)
    assert not verdict.small_effect


def test_a_leader_is_clear_only_when_every_round_agrees_and_the_effect_is_large() -> None:
    """Round-paired ratios: nine rounds all ahead by 10 % reject (two-sided p = 2/512); the
    same gap with the rounds disagreeing is noise; a consistent gap under the margin is small.
    A verdict alone in its Holm family is judged at alpha itself."""
    a = [100.0 + i for i in range(9)]
    ranking = verdicts.rank({"a": a, "b": [x / 1.1 for x in a]}, "higher")
    assert ranking.leader == "a" and ranking.tied == [] and not ranking.small
    assert ranking.tests["b"].p == pytest.approx(2 / 512) and ranking.tests["b"].pairs == 9
    assert abs(ranking.tests["b"].effect - 1.1) < 1e-9
    noisy = [x * 1.05 if i % 3 == 0 else x / 1.1 for i, x in enumerate(a)]  # 3 rounds of 9
    assert verdicts.rank({"a": a, "b": noisy}, "higher").tied == ["b"]
    small = verdicts.rank({"a": a, "b": [x / 1.02 for x in a]}, "higher")
    assert small.small and small.tied == ["b"]
    # lower is better: the same rule on the inverted ratio
    low = verdicts.rank({"a": [10.0] * 9, "b": [20.0 + i for i in range(9)]}, "lower")
    assert (low.leader, low.tied) == ("a", [])
    # one round paired: no test, never a margin
    assert verdicts.rank({"a": [100.0], "b": [50.0]}, "higher").untested == ["b"]
    bound = verdicts.rank({"a": [100.0, 101.0]}, "higher", bounds={"b": [120.0], "c": [50.0]})
    assert bound.client_bound == ["b"]  # saturated at or above the leader: not ruled out


def test_holm_spreads_alpha_over_the_runs_verdicts() -> None:
    """Holm over the verdicts: with eight verdicts, a leader must win all nine rounds (p
    2/512 = 0.0039 <= 0.05/8); eight of nine (p 4/512) passes only from the third step on."""
    a = [100.0 + i for i in range(9)]
    all_nine = {"a": a, "b": [x / 1.2 for x in a]}
    # b wins the round of the smallest gap: eight of nine
    eight_of_nine = {"a": a, "b": [a[0] * 1.01] + [x / 1.2 for x in a[1:]]}
    made = [verdicts.verdict_of(f"c{i}", "g", "m", "throughput_rps", "higher",
                                all_nine if i < 6 else eight_of_nine, 0.05, 0) for i in range(8)]
    verdicts.settle(made)
    assert [v.outcome for v in made[:6]] == ["clear"] * 6
    assert all(v.family == 8 for v in made)
    # the eight_of_nine-of-eight verdicts come last in Holm's order: levels 0.05/2 and 0.05/1
    assert [v.outcome for v in made[6:]] == ["clear", "clear"]
    lone = [verdicts.verdict_of("c", "g", "m", "throughput_rps", "higher", eight_of_nine, 0.05, 0)
            for _ in range(8)]
    verdicts.settle(lone)  # eight verdicts at p 4/512: the first step needs 0.0063, fails
    assert {v.outcome for v in lone} == {"tie"}
    assert lone[0].tie_reasons == {"b": "noise"}


def _p99(rows: pd.DataFrame, case: str) -> float:
    return float(rows.loc[rows["case"] == case, "p99_us"].iloc[0])


def test_sweep_verdict_is_the_highest_rate_within_the_slo(rendered: report.Report) -> None:
    """One SLO for every model (the scenario's slo_p99_ms): each model's rate is where its
    p99 crosses it, interpolated between the last point within and the first over."""
    sweep = rendered.sweeps[0]
    assert (sweep.slo_us, sweep.slo_source) == (SLO_MS * 1000, "the scenario's slo_p99_ms")
    assert {sweep.limit_us(m) for m in ("epoll", "asyncio")} == {SLO_MS * 1000}
    frame = rendered.run.frame
    epoll, asyncio = (frame[frame["variant"] == m] for m in ("epoll", "asyncio"))
    expected = {
        "epoll": sweeps.interpolate(45000, _p99(epoll, "sweep-c50-open-r90pct"), 55000,
                                    _p99(epoll, "sweep-c50-open-r110pct"), SLO_MS * 1000),
        "asyncio": sweeps.interpolate(15000, _p99(asyncio, "sweep-c50-open-r50pct"), 27000,
                                      _p99(asyncio, "sweep-c50-open-r90pct"), SLO_MS * 1000)}
    assert sweep.within_slo == {m: [pytest.approx(v)] for m, v in expected.items()}
    assert 45000 < expected["epoll"] < 55000 and 15000 < expected["asyncio"] < 27000
    assert sweep.stopped["epoll"].startswith("at 110% (55,000 req/s): p99 ")
    verdict = _verdict(rendered, "sweep-c50-open")
    assert (verdict.best, verdict.runner_up) == ("epoll", "asyncio")
    assert verdict.outcome == "unconfirmed"  # one repetition of the sweep


def test_interpolation_is_log_linear_in_the_p99() -> None:
    # 1 ms at 1,000 req/s, 100 ms at 2,000: a 10 ms SLO is crossed half-way
    assert sweeps.interpolate(1000, 1000, 2000, 100_000, 10_000) == pytest.approx(1500)
    assert sweeps.interpolate(0, float("nan"), 1000, 50_000, 10_000) == 0  # missed at once
    assert sweeps.interpolate(1000, 9000, 2000, 9000, 10_000) == 1000  # no growth: no guess


def _sweep_records(group: str, slo_ms: float) -> list[dict[str, Any]]:
    """epoll at 10%, 50%, 90% of 10k req/s, p99 around 0.6, 3 and 9 ms."""
    return [make_trial(f"{group}-c16-open-r{round(fraction * 100)}pct", group, "epoll", 0, 16,
                       fraction * 1e4, p50_us=p50, mode="open", rate=fraction * 1e4,
                       fraction=fraction, slo_ms=slo_ms, seed=index)
            for index, (fraction, p50) in enumerate(((0.1, 300), (0.5, 1500), (0.9, 4500)))]


def test_each_sweep_is_judged_against_its_own_trials_slo(tmp_path: Path) -> None:
    """The SLO is where the runner writes it, each trial's slo_p99_ms (its case's, in ms): two
    sweeps of one run with different SLOs are each judged against their own."""
    records = _sweep_records("tight", 2.0) + _sweep_records("loose", 20.0)
    assert {r["slo_p99_ms"] for r in records} == {2.0, 20.0}
    run = frames.load_run(write_run(tmp_path / "run", records, {"name": "synthetic"}))
    found = {s.label: s for s in sweeps.sweep_results(run)}
    assert (found["tight-c16-open"].slo_us, found["loose-c16-open"].slo_us) == (2000.0, 20000.0)
    assert found["tight-c16-open"].slo_source == "the scenario's slo_p99_ms"
    tight, loose = found["tight-c16-open"].within_slo, found["loose-c16-open"].within_slo
    assert 1000.0 < tight["epoll"][0] < 5000.0  # between the 10 % and the 50 % points
    assert loose == {"epoll": [9000.0]} and found["loose-c16-open"].ceiling_not_found["epoll"]
    overridden = sweeps.sweep_results(run, slo_override_us=20000.0)
    assert [s.within_slo for s in overridden] == [{"epoll": [9000.0]}] * 2
    assert overridden[0].slo_source == "given on the command line"

def test_sweep_slo_is_the_override_else_the_trials() -> None:
    rows = pd.DataFrame({"slo_p99_ms": [2.0, 2.0]})
    assert sweeps.sweep_slo(rows, 700.0) == (700.0, "given on the command line")
    assert sweeps.sweep_slo(rows) == (2000.0, "the scenario's slo_p99_ms")
    for unrecorded in (pd.DataFrame({"slo_p99_ms": [None]}), pd.DataFrame()):
        assert sweeps.sweep_slo(unrecorded) == (
            sweeps.DEFAULT_SLO_US, "no trial records an SLO: the report's default")


# ---------------------------------------------------------------- flags and exclusions


def test_flagged_trials_are_marked_and_footnoted(rendered: report.Report) -> None:
    markdown = rendered.paths["markdown"].read_text()
    assert "threaded‡" in markdown and "native†" in markdown
    assert validity.MARK_NOTES[validity.MARK_SATURATED] in markdown
    assert validity.MARK_NOTES[validity.MARK_ERRORS] in markdown
    assert "5 of 50 trials have figures left out" in markdown
    assert "## Trials with figures left out" in markdown
    assert "echo64-c128-closed--native--r2" in markdown
    agg = frames.aggregate(rendered.run.frame).set_index(["case", "variant"])
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
    names = {c.path.name for c in rendered.charts if not c.path.name.startswith("spectrum-")}
    assert len(rendered.charts) > len(names)  # and the percentile spectra (test_spectra.py)
    assert names == {"throughput_vs_connections.png", "p99_vs_connections.png",
                     "cpu_per_request.png", "memory_per_connection.png",
                     "latency_spectrum.png", "mixes.png", "latency_vs_load.png",
                     "scorecard.png"}
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
    assert "![Throughput versus connections: echo64-closed](charts/throughput_vs_connections.png)" \
        in markdown
    assert "## Verdict" in markdown and "## Environment" in markdown


# ---------------------------------------------------------------- histograms


def test_percentile_curve_walks_to_the_maximum() -> None:
    samples = lognormal_latencies(500, np.random.default_rng(1), 5000)
    histogram = hdr_histogram(samples)
    p50 = float(np.median(samples))
    swarm = {"histogram": histogram.encode().decode("ascii"), "histogram_unit": "us",
             "latency_us": {"p50": p50}}
    decoded, scale = histograms.decode_histogram(swarm)
    assert scale == 1.0 and decoded.get_total_count() == 5000
    levels, values = histograms.percentile_curve(decoded, scale)
    assert np.all(np.diff(levels) > 0) and np.all(np.diff(values) >= 0)
    assert levels[-1] < 1.0 and values[-1] == decoded.get_highest_equivalent_value(samples.max())
    assert values[0] <= samples.min() * 1.001
    assert abs(np.interp(0.5, levels, values) / p50 - 1) < 0.1


def test_a_histogram_is_read_in_its_recorded_unit_only() -> None:
    """The unit is the swarm's histogram_unit; a histogram without a known one is not drawn
    (the p50 the swarm also reports is never used to guess it)."""
    swarm = {"histogram": hdr_histogram(lognormal_latencies(500, np.random.default_rng(2))).encode()
             .decode("ascii"), "latency_us": {"p50": 0.5}}
    assert histograms.decode_histogram({**swarm, "histogram_unit": "ns"})[1] == 1e-3
    assert histograms.decode_histogram({**swarm, "histogram_unit": "ms"})[1] == 1e3
    assert histograms.decode_histogram(swarm) is None
    assert histograms.decode_histogram({**swarm, "histogram_unit": "furlongs"}) is None


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
    text = report.build_report(folder).paths["html"].read_text()
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
    run = frames.load_run(write_run(tmp_path / "run", records, SPEC))
    (sweep,) = sweeps.sweep_results(run, slo_override_us=SLO_MS * 1000)
    assert sweep.within_slo == {"epoll": [5000.0], "asyncio": [0.0]}  # no p99 to interpolate
    assert sweep.ceiling_not_found == {"epoll": False, "asyncio": False}
    assert sweep.stopped["epoll"].startswith("at 90% (9,000 req/s): p99 not valid (")
    assert "client saturated" in sweep.stopped["epoll"]
    assert sweep.stopped["asyncio"].startswith("at 10% (1,000 req/s): p99 ")
    (verdict,) = verdicts.sweep_verdicts([sweep])
    assert (verdict.best, verdict.best_value, verdict.outcome) == ("epoll", 5000.0,
                                                                   "unconfirmed")
    # no model within the SLO at its first point: no verdict, and each model says why
    (nobody,) = sweeps.sweep_results(run, slo_override_us=10.0)
    (none,) = verdicts.sweep_verdicts([nobody])
    assert none.outcome == "none" and none.basis.startswith("no model met the SLO")
    assert "epoll: at 10% (1,000 req/s): p99 " in none.note and "asyncio: at 10%" in none.note


def test_only_the_load_before_the_run_says_the_machine_was_busy() -> None:
    """The load after counts the run's own threads (threaded at 1,000 connections makes a
    thousand runnable): a quiet start and a high end is no warning; a busy start is."""
    quiet_start = {"cpu_count": 2, "load_average_before": [0.7, 1.0, 1.2],
                   "load_average_after": [5.0, 3.0, 2.0]}
    assert report.busy_machine(quiet_start) == ""
    busy_start = {**quiet_start, "load_average_before": [1.5, 1.0, 1.0]}
    assert "machine was busy" in report.busy_machine(busy_start)
