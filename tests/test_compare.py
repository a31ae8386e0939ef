"""``bench compare RUN_A RUN_B`` on small synthetic run folders: the ratio, its interval and
its Holm-adjusted significance per case and model; refusal of runs whose scenarios differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _helpers_report import make_trial, write_run

from bench import cli
from bench import compare as cmp
from bench.analysis.frames import load_run

CASE = "echo64-c16-closed"
REPS = 10  # the exact signed-rank test's smallest p is 2 / 2**10: clear after Holm over six


def _spec(connections: int = 16, scenario: str = "synthetic") -> dict[str, Any]:
    return {"name": scenario, "cases": [{"name": CASE, "mix": "echo:64",
                                         "connections": connections, "mode": "closed"}]}


def _run(folder: Path, throughputs: dict[str, float], spec: dict[str, Any]) -> Path:
    records = [make_trial(CASE, "echo", model, rep, 16, mean * (1 + 0.01 * (rep % 3)))
               for rep in range(1, REPS + 1) for model, mean in throughputs.items()]
    return write_run(folder, records, spec)


def test_a_doubled_model_is_named_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {"epoll": 50_000, "threaded": 20_000, "asyncio": 9_000},
             _spec())
    b = _run(tmp_path / "b", {"epoll": 100_000, "threaded": 20_000, "select": 5_000}, _spec())
    result = cmp.compare_runs(load_run(a), load_run(b))
    found = {(c.model, c.figure): c for c in result.comparisons}
    doubled = found["epoll", "throughput_rps"]
    assert doubled.ratio == pytest.approx(2.0, rel=0.02)
    assert doubled.interval is not None and doubled.interval[0] > 1.5
    assert doubled.p_holm < 0.05 and doubled.verdict == "better"
    assert found["epoll", "cpu_us_per_request"].verdict == "better"  # same CPU, twice the work
    same = found["threaded", "throughput_rps"]
    assert same.ratio == pytest.approx(1.0) and same.verdict == "no clear difference"
    assert found["threaded", "p99_us"].verdict == "no clear difference"
    assert len(result.comparisons) == 2 * len(cmp.FIGURES)
    assert result.only_in_a == ["asyncio"] and result.only_in_b == ["select"]
    text = cmp.markdown(result)
    assert f"### {CASE}" in text and "| epoll | median throughput (req/s) |" in text
    assert "Only in A: asyncio." in text and "Only in B: select." in text


def test_the_p_values_are_holm_adjusted_over_every_comparison(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {"epoll": 50_000}, _spec())
    b = _run(tmp_path / "b", {"epoll": 60_000}, _spec())
    result = cmp.compare_runs(load_run(a), load_run(b))
    raw = sorted(c.p for c in result.comparisons)
    adjusted = sorted(c.p_holm for c in result.comparisons)
    assert adjusted[0] == pytest.approx(min(1.0, raw[0] * len(raw)))


@pytest.mark.parametrize(("spec_b", "named"), [
    (_spec(connections=32), f"case {CASE}: connections 16 against 32"),
    (_spec(scenario="other"), "scenario 'synthetic' against 'other'"),
])
def test_runs_whose_scenarios_differ_are_refused(tmp_path: Path, spec_b: dict[str, Any],
                                                 named: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", {"epoll": 50_000}, _spec())
    b = _run(tmp_path / "b", {"epoll": 50_000}, spec_b)
    meta = json.loads((b / "run.json").read_text())
    meta["scenario"] = spec_b["name"]
    (b / "run.json").write_text(json.dumps(meta))
    meta_a = json.loads((a / "run.json").read_text())
    meta_a["scenario"] = "synthetic"
    (a / "run.json").write_text(json.dumps(meta_a))
    assert cli.main(["compare", str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and named in captured.err


def test_the_verb_prints_markdown_or_json(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", {"epoll": 50_000}, _spec())
    b = _run(tmp_path / "b", {"epoll": 100_000}, _spec())
    assert cli.main(["compare", str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("## concbench compare: B against A")
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    throughput = next(c for c in document["comparisons"] if c["figure"] == "throughput_rps")
    assert throughput["ratio"] == pytest.approx(2.0, rel=0.02)
    assert throughput["verdict"] == "better" and len(throughput["interval"]) == 2


def test_a_missing_run_folder_is_one_line_on_stderr(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", {"epoll": 50_000}, _spec())
    assert cli.main(["compare", str(a), str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1


def test_too_few_repetitions_are_said_to_name_nothing(tmp_path: Path) -> None:
    assert cmp.pairs_needed(6, 0.05) == 8  # 6 x 2 / 2**8 = 0.047
    records = {"epoll": 50_000, "threaded": 20_000}
    a = write_run(tmp_path / "a", [make_trial(CASE, "echo", m, r, 16, v) for r in (1, 2, 3)
                                   for m, v in records.items()], _spec())
    b = write_run(tmp_path / "b", [make_trial(CASE, "echo", m, r, 16, 2 * v) for r in (1, 2, 3)
                                   for m, v in records.items()], _spec())
    text = cmp.markdown(cmp.compare_runs(load_run(a), load_run(b)))
    assert "With at most 3 paired repetitions no difference can be named" in text
    assert "--repeat 8 or more" in text
