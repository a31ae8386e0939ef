"""The answer: validity per figure, ratios to native, intervals from one repetition up, equal
offered load, workloads read from the cases' fields, sentences, answer.json and the terminal.

Synthetic run folders from tests/_helpers_report.py (the runner's own record code), so the
analysis reads exactly what a run gives it; no processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _helpers_report import make_trial, write_run
from rich.console import Console

from bench.analysis import assurance, frames, scorecard, validity
from bench.report import document as report
from bench.run.trial import derive

THROUGHPUT = {"epoll": 50000, "asyncio": 30000, "threaded": 20000, "native": 100000}


def _rederive(record: dict[str, Any]) -> dict[str, Any]:
    record["derived"] = derive(record["swarm"], record["server"], record["connections"])
    return record


def _with_errors(record: dict[str, Any], **kinds: int) -> dict[str, Any]:
    record["swarm"]["errors"] = dict(kinds)
    return _rederive(record)


# ---------------------------------------------------------------- validity per figure


def test_a_saturated_client_keeps_the_server_side_figures() -> None:
    judged = validity.judge(make_trial("e-c16-closed", "echo", "epoll", 0, 16, 9000,
                                       saturated=True))
    assert judged.client_saturated and judged.excluded and judged.flags == validity.MARK_SATURATED
    for metric in validity.CLIENT_SIDE:
        assert not judged.valid(metric) and "client saturated" in judged.invalid[metric]
    for metric in ("cpu_us_per_request", "ctx_switches_per_request",
                   "rss_per_connection_bytes", "server_cpu_percent"):
        assert judged.valid(metric), metric
    assert judged.reason.startswith("throughput and latency: client saturated")


def test_errors_leave_out_what_they_touch() -> None:
    # 5 timeouts in 20,000 requests: throughput and latency out, per-request figures kept
    few = validity.judge(_with_errors(make_trial("e-c16-closed", "echo", "epoll", 0, 16,
                                                 10000), timeout=5))
    assert few.has_errors and not few.valid("p99_us") and not few.valid("throughput_rps")
    assert few.valid("cpu_us_per_request") and few.valid("rss_per_connection_bytes")
    # 10 % unanswered: the per-request figures are left out too (they could move by as much)
    many = validity.judge(_with_errors(make_trial("e-c16-closed", "echo", "epoll", 0, 16,
                                                  1000), timeout=220))
    assert not many.valid("cpu_us_per_request")
    assert many.invalid["cpu_us_per_request"].endswith("% of requests unanswered (over 1%)")
    # connections turned away: RSS per connection divides by ones the server never held
    away = validity.judge(_with_errors(make_trial("e-c16-closed", "echo", "select", 0, 16,
                                                  1000), over_capacity=3))
    assert not away.valid("rss_per_connection_bytes") and away.valid("threads_max")
    assert away.valid("rss_per_held_connection_bytes")
    failed = validity.judge(make_trial("e-c16-closed", "echo", "epoll", 0, 16, 0,
                                       failure="boom"))
    assert failed.flags == validity.MARK_FAILED
    assert not any(failed.valid(m) for m in validity.JUDGED)


def test_models_that_queue_by_design_say_which_figures_stand() -> None:
    """iterative serves 1 client at once (servers' CLIENTS_AT_ONCE), threadpool its
    --threads: past that, the waiting connections are in neither throughput nor latency nor
    RSS per connection; its CPU per request stands."""
    iterative = validity.judge(_with_errors(make_trial("e-c16-closed", "echo", "iterative", 0,
                                                       16, 5000), timeout=15))
    assert iterative.queues_at == 1 and validity.MARK_QUEUES in iterative.flags
    assert "serves 1 client at once by design; 15 of 16 connections wait" in \
        iterative.invalid["throughput_rps"]
    assert not iterative.valid("rss_per_connection_bytes")
    assert iterative.valid("cpu_us_per_request") and iterative.valid("threads_max")
    assert validity.judge(make_trial("e-c1-closed", "echo", "iterative", 0, 1, 5000)).valid(
        "p99_us")  # one connection: nobody waits
    pool = make_trial("e-c8-closed", "echo", "threadpool", 0, 8, 5000)
    assert validity.judge(pool).queues_at is None  # 8 <= its default 16 threads
    pool["model_args"] = ["--threads", "4"]
    assert validity.judge(pool).queues_at == 4
    assert validity.judge(pool, clients_at_once=lambda _record: None).queues_at is None


def test_one_rule_feeds_the_frame_the_csv_and_the_medians(tmp_path: Path) -> None:
    records = [make_trial("e-c16-closed", "echo", "epoll", r, 16, 50000 + r, seed=r)
               for r in range(2)]
    records.append(make_trial("e-c16-closed", "echo", "epoll", 2, 16, 9e6, saturated=True))
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    agg = built.aggregate.set_index(["case", "variant"]).loc[("e-c16-closed", "epoll")]
    assert agg["throughput_rps_n"] == 2 and agg["throughput_rps_max"] < 1e6
    assert agg["cpu_us_per_request_n"] == 3  # the saturated trial's CPU per request counts
    csv = (tmp_path / "run" / "summary.csv").read_text().splitlines()
    assert "ok_cpu_us_per_request" in csv[0] and "exclusion_reason" in csv[0]
    answer = json.loads((tmp_path / "run" / "answer.json").read_text())
    assert answer["cells"]["per_case"]["e-c16-closed"] == {"total": 9, "valid": 9}


def test_valid_cells_are_counted_per_case(tmp_path: Path) -> None:
    records = [make_trial("e-c16-closed", "echo", "epoll", 0, 16, 5000, saturated=True),
               make_trial("e-c16-closed", "echo", "threaded", 0, 16, 5000),
               make_trial("e-c16-closed", "echo", "select", 0, 16, 0, failure="boom")]
    sure = assurance.assurance(frames.load_run(write_run(tmp_path / "run", records,
                                                         {"name": "t"})))
    per_model = len(validity.CELL_METRICS)
    # epoll loses throughput, p50, p99, p99.9; threaded keeps all but p99.9 (12,000 requests:
    # 12 samples beyond it, too few to rank); select has none
    assert sure.per_case == {"e-c16-closed": (per_model - 4 + per_model - 1, 3 * per_model)}
    assert (sure.cells_valid, sure.cells_total) == (2 * per_model - 5, 3 * per_model)
    assert sure.saturated == 1 and sure.saturated_models == ["epoll"]


# ---------------------------------------------------------------- ratios to native


def _echo_run(folder: Path, repeats: int, *, native_saturated: bool = False,
              models: dict[str, float] | None = None) -> Path:
    records = []
    for repeat in range(repeats):
        for index, (model, mean) in enumerate((models or THROUGHPUT).items()):
            wobble = (1 + 0.01 * ((repeat + index) % 3 - 1))
            records.append(make_trial("echo64-c16-closed", "echo", model, repeat, 16,
                                      mean * wobble, seed=repeat * 10 + index,
                                      saturated=native_saturated and model == "native"))
    return write_run(folder, records, {"name": "t"})


def test_throughput_and_cpu_carry_their_ratio_to_native(tmp_path: Path) -> None:
    built = report.build_report(_echo_run(tmp_path / "run", 3))
    agg = built.aggregate.set_index("variant")
    assert agg.loc["epoll", "throughput_rps_x_native"] == pytest.approx(0.5, rel=0.02)
    # one CPU second per second in every synthetic trial: CPU per request is 1/throughput
    assert agg.loc["epoll", "cpu_us_per_request_x_native"] == pytest.approx(2.0, rel=0.02)
    text = built.paths["markdown"].read_text()
    assert "travel between machines and days; absolute req/s does not" in text
    assert "| × native |" in text.split("### echo64-c16-closed")[1].split("\n")[2]
    saturated = report.build_report(_echo_run(tmp_path / "sat", 3, native_saturated=True))
    row = saturated.aggregate.set_index("variant").loc["epoll"]
    assert row["throughput_rps_x_native_bound"] == "≤"  # native was at least that fast
    assert row["cpu_us_per_request_x_native_bound"] == ""  # its CPU per request stands
    assert "≤ 0.5×" in saturated.paths["markdown"].read_text()


# ---------------------------------------------------------------- intervals, from one repetition


@pytest.mark.parametrize("repeats", [1, 3, 9])
def test_verdicts_work_from_one_repetition_up(tmp_path: Path, repeats: int) -> None:
    """One round: no test (unconfirmed); three: a 1.67x gap in every round is still noise (the
    smallest two-sided p of three pairs is 0.25); nine: clear."""
    built = report.build_report(_echo_run(tmp_path / "run", repeats))
    (verdict,) = built.verdicts
    assert verdict.best == "epoll" and verdict.runner_up == "asyncio"
    answer = json.loads(built.paths["answer"].read_text())
    assert answer["repetitions"] == {"min": repeats, "max": repeats}
    entry = answer["workloads"][0]
    assert entry["best"][0] == "epoll"
    if repeats == 1:
        assert verdict.outcome == "unconfirmed" and entry["interval"] is None
        assert "unconfirmed (fewer than 2 rounds paired: no test)" in entry["sentence"]
    elif repeats == 3:
        assert verdict.outcome == "tie" and entry["ties"] == ["asyncio", "threaded"]
        assert entry["test"]["asyncio"] == {"p": 0.25, "effect": pytest.approx(1.666, abs=0.05),
                                            "pairs": 3, "tie": "rounds"}
    else:
        assert verdict.outcome == "clear" and entry["best"] == ["epoll"]
        low, high = entry["interval"]
        assert 1.0 < low <= 50000 / 30000 * 1.05 and high >= low
        assert entry["outcome"] == "clear" and entry["ties"] == []


def test_rounds_that_disagree_are_a_tie(tmp_path: Path) -> None:
    """Nine rounds: asyncio within 0.2 % of epoll, the rounds' wobble deciding who leads in
    each: a tie for noise; threaded, 2.5x behind in every round, is clearly worse."""
    close = {"epoll": 50000, "asyncio": 49900, "threaded": 20000, "native": 100000}
    built = report.build_report(_echo_run(tmp_path / "run", 9, models=close))
    (verdict,) = built.verdicts
    assert verdict.outcome == "tie" and set(verdict.contenders) == {"epoll", "asyncio"}
    assert verdict.tie_reasons == {"asyncio": "noise"}
    entry = json.loads(built.paths["answer"].read_text())["workloads"][0]
    assert set(entry["best"]) == {"epoll", "asyncio"} and entry["ties"] == entry["best"][1:]
    assert entry["interval"][0] <= 1.0 <= entry["interval"][1]


# ---------------------------------------------------------------- equal offered load


def _equal_load_records(repeats: int = 2) -> list[dict[str, Any]]:
    """An open-loop case at 4,000 req/s for every model (no offered fraction), and a closed
    one: the runner side's equal-load case as the analysis must read it."""
    p50 = {"epoll": 100, "asyncio": 300, "threaded": 200, "native": 60}
    records = []
    for repeat in range(repeats):
        for index, (model, latency) in enumerate(p50.items()):
            seed = 100 * repeat + index
            records.append(make_trial("echo64-c16-open-r4000", "equal", model, repeat, 16,
                                      4000, p50_us=latency, mode="open", rate=4000.0,
                                      seed=seed))
            records.append(make_trial("echo64-c16-closed", "echo", model, repeat, 16,
                                      THROUGHPUT[model], seed=seed))
    return records


def test_an_equal_load_case_is_judged_by_its_latency(tmp_path: Path) -> None:
    built = report.build_report(write_run(tmp_path / "run", _equal_load_records(),
                                          {"name": "t"}))
    assert built.sweeps == []  # one rate, no fractions: not a sweep
    equal = next(v for v in built.verdicts if v.case == "echo64-c16-open-r4000")
    assert (equal.figure, equal.better, equal.best) == ("p99_us", "lower", "epoll")
    names = [w.name for w in built.workloads]
    assert "latency at equal load (4,000 req/s, small requests, 16 connections)" in names
    assert "CPU per request (at equal load)" in names
    text = built.paths["markdown"].read_text()
    assert "## Equal-load cases" in text and "### echo64-c16-open-r4000" in text
    answer = json.loads(built.paths["answer"].read_text())
    latency = next(w for w in answer["workloads"] if w["case"] == "echo64-c16-open-r4000"
                   and w["metric"] == "p99_us")
    assert latency["better"] == "lower" and latency["best"][0] == "epoll"
    assert latency["ratio_to_native"]["asyncio"] > latency["ratio_to_native"]["epoll"] > 1


# ---------------------------------------------------------------- workloads and sentences


def test_workloads_come_from_the_cases_fields_not_their_names(tmp_path: Path) -> None:
    records = []
    for repeat in range(2):
        for index, (model, mean) in enumerate(THROUGHPUT.items()):
            seed = 10 * repeat + index
            records += [
                make_trial("alpha", "g1", model, repeat, 8, mean / 40, mix="work:5000",
                           seed=seed),
                make_trial("beta", "g2", model, repeat, 64, mean / 10, mix="sleep:20000",
                           seed=seed),
                make_trial("gamma", "g3", model, repeat, 2000, mean, seed=seed),
            ]
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    names = {w.case + ":" + w.figure: w.name for w in built.workloads}
    assert names == {
        "alpha:throughput_rps": "CPU-heavy handler (WORK 5,000), 8 connections",
        "beta:throughput_rps": "slow downstream I/O (20 ms), 64 connections",
        "gamma:throughput_rps": "many connections (2,000, small requests)",
        "gamma:cpu_us_per_request": "CPU per request (2,000 connections, small requests)",
        "gamma:rss_per_connection_bytes": "memory per connection (2,000 connections, small "
                                          "requests)",
    }
    assert [w.short for w in built.workloads] == ["CPU c8", "I/O c64", "echo c2000",
                                                   "CPU/req", "RSS/conn"]


def test_sentences_name_the_best_and_the_measured_reason(tmp_path: Path) -> None:
    folder = _echo_run(tmp_path / "run", 9)
    for path in (folder / "trials").glob("*threaded*.json"):  # threaded: 33 KiB a connection
        record = json.loads(path.read_text())
        record["server"]["rss_max"] = record["server"]["rss_idle"] + 33 * 1024 * 16
        path.write_text(json.dumps(_rederive(record)))
    built = report.build_report(folder)
    by_figure = {w.figure: w for w in built.workloads}
    speed = by_figure["throughput_rps"].sentence
    assert speed.startswith("small requests, 16 connections: epoll is best (50,000 req/s, "
                            "0.5× native)")
    assert "asyncio costs 1.7× epoll's CPU per request" in speed
    assert "threaded costs 2.5× epoll's CPU per request" in speed
    memory = by_figure["rss_per_connection_bytes"].sentence
    assert memory.startswith("memory per connection (16 connections, small requests): no "
                             "verdict: a slope of RSS over connections held needs valid trials "
                             "at 3 or more connection counts of one request mix (this run: 16)")
    cpu = by_figure["cpu_us_per_request"]
    assert cpu.verdict.best == "epoll" and "asyncio costs 1.7× epoll's CPU per request" in \
        cpu.sentence
    html = built.paths["html"].read_text()
    assert html.index("<h2>Scorecard</h2>") < html.index("<h2>The answer, per workload</h2>") \
        < html.index("<h2>How sure</h2>") < html.index("<h2>Charts</h2>") \
        < html.index("<h2>Environment</h2>")
    assert speed in built.paths["markdown"].read_text()


def _held(record: dict[str, Any], idle_fds: int, rss: int) -> dict[str, Any]:
    """The server's samples and peak: ``idle_fds`` descriptors before the load, ``rss`` at the
    peak, one descriptor per connection held."""
    server = record["server"]
    server["samples"] = [{"t": 0.0, "fds": idle_fds, "rss": server["rss_idle"]}]
    server["fds_max"], server["rss_max"] = idle_fds + record["connections"], rss
    return _rederive(record)


def test_memory_per_connection_is_the_slope_over_connections_held(tmp_path: Path) -> None:
    """RSS = base + slope x connections held, at 1, 16 and 256 connections, nine rounds: the
    slope is each model's figure (a large fixed growth does not count), and a model that held
    only part of its connections is not credited with the rest."""
    records = []
    for repeat in range(9):
        for connections in (1, 16, 256):
            case = f"e-c{connections}-closed"
            for model, slope, base in (("epoll", 2_000, 30_000_000), ("threaded", 40_000, 0)):
                record = make_trial(case, "echo", model, repeat, connections, 20_000)
                rss = 1_000_000 + base + slope * connections + 4096 * (repeat % 2)
                records.append(_held(record, 8, rss))
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    (memory,) = [w for w in built.workloads if w.kind == "memory"]
    assert memory.verdict.best == "epoll" and memory.verdict.outcome == "clear"
    assert memory.verdict.samples["epoll"] == pytest.approx([2_000] * 9, rel=0.01)
    assert memory.verdict.samples["threaded"] == pytest.approx([40_000] * 9, rel=0.01)
    assert "resolution 16 bytes" in memory.verdict.note  # a 4 KiB page over 255 connections


def test_no_verdict_says_why(tmp_path: Path) -> None:
    records = [make_trial("e-c16-closed", "echo", m, 0, 16, 9000, saturated=True)
               for m in ("epoll", "asyncio")]
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    (workload, *_rest) = built.workloads
    assert workload.verdict.outcome == "none"
    assert workload.sentence.startswith(
        "small requests, 16 connections: no verdict: the client saturated first for epoll and "
        "asyncio (each at least 9,000 req/s)")


# ---------------------------------------------------------------- churn, slowloris, head-of-line

ECHO_ONLY = "echo64-c16-closed"
CHURN_CASE, SLOW_CASE, HOL_CASE = "echo64-c16-churn-closed", "echo64-c16-slow1000-closed", \
    "hol-c16-closed"
HOL_MIX = "echo:64=99,work:200000=1"
# model -> (CPU µs per connection, slow case's p50 µs, threads held, ECHO p99 µs, ratio)
WORKLOAD_FIGURES = {"epoll": (30.0, 100.0, 1, 9000.0, 1.5), "asyncio": (45.0, 200.0, 1,
                                                                          18000.0, 3.0),
                    "threaded": (90.0, 600.0, 1017, 30000.0, 5.2),
                    "native": (20.0, 80.0, 1, 4000.0, 1.2)}


def _workload_records(repeats: int = 9) -> list[dict[str, Any]]:
    """The workloads scenario's four cases as the runner records them: ECHO alone, churn (one
    request per connection), 1,000 slow connections held and 1 % WORK among ECHOs."""
    records = []
    for repeat in range(repeats):
        for index, (model, (cpu, p50, threads, cheap, ratio)) in \
                enumerate(WORKLOAD_FIGURES.items()):
            seed, wobble = 10 * repeat + index, 1 + 0.01 * ((repeat + index) % 3 - 1)
            echo = make_trial(ECHO_ONLY, "echo", model, repeat, 16, THROUGHPUT[model], seed=seed)
            churn = make_trial(CHURN_CASE, "churn", model, repeat, 16, 5000, seed=seed)
            churn["requests_per_connection"] = 1
            churn["derived"].update(cpu_us_per_connection=cpu * wobble,
                                    connections_per_s=5000.0 * wobble)
            slow = make_trial(SLOW_CASE, "slowloris", model, repeat, 16, 20000, p50_us=p50,
                              seed=seed)
            slow.update(slowloris_connections=1000, reference_case=ECHO_ONLY)
            slow["server"].update(threads_max=threads, rss_max=16_000_000 + 33_000 * threads)
            slow["derived"].update(slowloris_held=1000, slowloris_errors=0)
            hol = make_trial(HOL_CASE, "hol", model, repeat, 16, 4000, mix=HOL_MIX, seed=seed)
            hol.update(reference_case=ECHO_ONLY, reference_trial=echo["trial_id"])
            hol["derived"].update(reference_kind_p99_us=cheap * wobble,
                                  p99_ratio_to_reference=ratio * wobble,
                                  reference_p99_us=cheap / ratio)
            records += [echo, churn, slow, hol]
    return records


def test_churn_slowloris_and_head_of_line_are_their_own_workloads(tmp_path: Path) -> None:
    built = report.build_report(write_run(tmp_path / "run", _workload_records(),
                                          {"name": "t"}))
    by_case: dict[str, list[scorecard.Workload]] = {}
    for workload in built.workloads:
        by_case.setdefault(workload.case, []).append(workload)
    assert [w.name for w in by_case[ECHO_ONLY]][0] == "small requests, 16 connections"
    (churn,), (slow,), (hol,) = by_case[CHURN_CASE], by_case[SLOW_CASE], by_case[HOL_CASE]
    assert (churn.name, churn.figure, churn.better, churn.short) == (
        "connection churn (1 request per connection, 16 connections)",
        "cpu_us_per_connection", "lower", "CPU/conn")
    assert (slow.name, slow.figure, slow.better, slow.short) == (
        "slow clients holding connections (1,000 held, 16 connections measured)", "p99_us",
        "lower", "slow p99")
    assert (hol.name, hol.figure, hol.better, hol.short) == (
        f"head-of-line blocking ({HOL_MIX}, 16 connections)", "reference_kind_p99_us",
        "lower", "HoL p99")
    assert {w.verdict.best for w in (churn, slow, hol)} == {"epoll"}
    # the CPU per request and memory per connection columns stay on the ECHO-only case
    assert {w.case for w in built.workloads if w.kind in ("cpu", "memory")} == {ECHO_ONLY}
    answer = json.loads(built.paths["answer"].read_text())
    metrics = {w["case"]: w["metric"] for w in answer["workloads"]}
    assert metrics[CHURN_CASE] == "cpu_us_per_connection"
    assert metrics[SLOW_CASE] == "p99_us" and metrics[HOL_CASE] == "reference_kind_p99_us"


def test_the_workloads_sentences_give_the_measured_reason(tmp_path: Path) -> None:
    built = report.build_report(write_run(tmp_path / "run", _workload_records(),
                                          {"name": "t"}))
    sentences = {w.kind: w.sentence for w in built.workloads}
    churn = sentences[scorecard.CHURN]
    assert churn.startswith("connection churn (1 request per connection, 16 connections): "
                            "epoll is best (30 µs, 1.5× native, 5,000 connections/s)")
    assert "threaded's CPU per connection is 3× epoll's (5,000 connections/s)" in churn
    slow = sentences[scorecard.SLOWLORIS]
    assert "epoll is best (" in slow and "1 thread and 15.3 MiB for 1,000 held connections" \
        in slow
    assert "threaded runs 1,017 threads and 47.3 MiB for 1,000 held connections (" in slow
    hol = sentences[scorecard.HOL]
    assert "epoll is best (9 ms, 2.2× native, its ECHO p99 is 1.5× its ECHO-only p99)" in hol
    assert "threaded's ECHO p99 is 3.3× epoll's and 5.2× its ECHO-only p99" in hol
    assert all(s in built.paths["markdown"].read_text() for s in (churn, slow, hol))


def test_churn_figures_keep_their_own_validity(tmp_path: Path) -> None:
    """A saturated client: CPU per connection stands (like CPU per request), connections per
    second does not (it is the throughput over K); a ratio to a reference whose p99 is left
    out is left out too."""
    records = _workload_records(2)
    churn = next(r for r in records if r["case"] == CHURN_CASE and r["model"] == "epoll")
    churn["derived"]["client_saturated"] = True
    judged = validity.judge(churn)
    assert judged.valid("cpu_us_per_connection") and not judged.valid("connections_per_s")
    echo = next(r for r in records if r["case"] == ECHO_ONLY and r["model"] == "threaded")
    echo["derived"]["client_saturated"] = True
    frame = frames.summary_frame(records)
    hol = frame[(frame["case"] == HOL_CASE) & (frame["variant"] == "threaded")]
    assert hol[frames.RATIO_OK].tolist().count(False) == 1
    assert frames.valid_figures(hol)["p99_ratio_to_reference"].isna().sum() == 1
    churn_row = frames.valid_figures(frame[frame["trial_id"] == churn["trial_id"]]).iloc[0]
    assert churn_row["cpu_us_per_connection"] > 0 and churn_row["connections_per_s"] != \
        churn_row["connections_per_s"]


# ---------------------------------------------------------------- answer.json


def test_answer_json_has_its_documented_shape(tmp_path: Path) -> None:
    records = _equal_load_records(9)
    records.append(make_trial("echo64-c16-closed", "echo", "iterative", 0, 16, 900))
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    path = tmp_path / "run" / "answer.json"
    assert built.paths["answer"] == path
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".answer")] == []
    answer = json.loads(path.read_text())
    assert answer["format"] == 2
    assert answer["repetitions"] == {"min": 1, "max": 9}  # iterative ran once
    assert answer["cells"]["total"] == built.assurance.cells_total
    assert answer["cells"]["valid"] == built.assurance.cells_valid
    for entry in answer["workloads"]:
        assert {"name", "case", "metric", "better", "best", "ties", "interval", "values",
                "ratio_to_native", "sentence"} <= set(entry)
        assert entry["better"] in ("higher", "lower")
        assert entry["best"] or entry["outcome"] == "none"
        assert "native" not in entry["best"] and "native" not in entry["ratio_to_native"]
        assert entry["ties"] == entry["best"][1:]
        assert entry["interval"] is None or len(entry["interval"]) == 2
    closed = next(w for w in answer["workloads"] if w["case"] == "echo64-c16-closed"
                  and w["metric"] == "throughput_rps")
    assert closed["values"]["epoll"] == pytest.approx(50000, rel=0.02)
    assert closed["ratio_to_native"]["epoll"] == pytest.approx(0.5, rel=0.03)
    assert "iterative" in closed["left_out"]


# ---------------------------------------------------------------- the terminal


def test_terminal_summary_fits_100_columns(tmp_path: Path) -> None:
    """Long model names (interpreter tags) stay whole at 100 columns; the summary ends with
    one line per workload and the path of report.html."""
    records = []
    for repeat in range(2):
        for index, (model, tag) in enumerate((("asyncio-threads", "python3.13t"),
                                              ("subinterpreters", "python3.13t"),
                                              ("epoll", None), ("threaded", None),
                                              ("native", None))):
            for case, conns, mix in (("echo64-c16-closed", 16, "echo:64"),
                                     ("work-c16-closed", 16, "work:2000"),
                                     ("sleep-c128-closed", 128, "sleep:10000"),
                                     ("echo64-c1000-closed", 1000, "echo:64")):
                records.append(make_trial(case, "g", model, repeat, conns,
                                          1000.0 * (index + 1) + repeat, mix=mix, tag=tag,
                                          gil=False if tag else None, seed=index + repeat))
    records += _equal_load_records(2)
    built = report.build_report(write_run(tmp_path / "run", records, {"name": "t"}))
    console = Console(width=100, record=True, color_system=None, force_terminal=False)
    report.print_summary(built, console)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    for name in ("asyncio-threads@python3.13t", "subinterpreters@python3.13t"):
        assert any(name in line for line in lines), name
    assert lines[0].startswith("Summary")
    assert [line for line in lines if line][-1] == f"report: {built.paths['html']}"
    answers = [line for line in lines if line.startswith("• ")]
    assert len(answers) == len(built.workloads)
    assert answers[0].startswith("• small requests, 16 connections: ")


def test_a_sweep_loser_that_met_the_slo_everywhere_reads_as_a_sentence() -> None:
    import pandas as pd

    from bench.analysis import sentences
    from bench.analysis import workload as columns

    cell = columns.Cell(100.0, 0.5, None, 2.0, "worse")
    workload = columns.Workload("load within the SLO", "sweep", "rate_within_slo", "higher",
                                "sweep", verdict=None, cells={"gevent": cell},  # type: ignore
                                notes={"gevent": "met the SLO at every offered rate"})
    why = sentences._why(workload, "gevent", "epoll", pd.DataFrame())  # noqa: SLF001
    assert why == "gevent met the SLO at every offered rate, but its highest was lower"
    workload.notes["gevent"] = "at 90% (9,000 req/s): p99 12 ms over 10 ms"
    assert sentences._why(workload, "gevent", "epoll", pd.DataFrame()).startswith(  # noqa: SLF001
        "gevent stops at 90%")
