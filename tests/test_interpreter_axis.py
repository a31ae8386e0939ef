"""Interpreters as a scenario axis: servers run under each, records carry version and GIL,
missing interpreters are skipped with a note, and the report compares them.

One tiny real run (epoll, two interpreters that exist and one that does not); the report's
ratio and noise rules on synthetic records.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers_report import make_trial, write_run

from bench.report import document as report
from bench.run import planning, scenario
from bench.run.scenario_check import ScenarioError

REPO = Path(__file__).resolve().parent.parent
MISSING = "/nonexistent/python3.99"

SCENARIO = """\
description = "tiny interpreter axis"
servers = ["epoll"]
interpreters = [
  "current",
  {{ path = "{wrapper}", name = "wrapped", env = {{ CONCBENCH_MARK = "seen" }} }},
  "{missing}",
]
placement = "none"
duration_s = 0.5
warmup_s = 0.1
timeout_s = 2.0

[[group]]
name = "cpu"
mix = "work:200"
connections = [2]
"""


@pytest.fixture(scope="module")
def axis_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """Run the tiny scenario; the run folder, the terminal output and the wrapper's log."""
    folder = tmp_path_factory.mktemp("axis")
    marks = folder / "marks"
    wrapper = folder / "python-wrapper"  # this interpreter, noting the variable it was given
    wrapper.write_text(f'#!/bin/sh\n[ -n "$CONCBENCH_MARK" ] && echo "$CONCBENCH_MARK $*" >> '
                       f'{marks}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    path = folder / "axis.toml"
    path.write_text(SCENARIO.format(wrapper=wrapper, missing=MISSING))
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--scenario", str(path),
                           "--out", str(folder / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "run", " ".join(done.stdout.split()), marks


def test_missing_interpreter_is_skipped_with_a_note(axis_run: tuple[Path, str, Path]) -> None:
    run_dir, out, _ = axis_run
    note = f"interpreter {MISSING} skipped: {MISSING}: no such file"
    assert note in out
    assert f"Note: {note}" in (run_dir / "report.md").read_text()
    run = json.loads((run_dir / "run.json").read_text())
    assert note in run["scenario_spec"]["notes"]


def test_servers_run_under_each_interpreter_with_its_environment(
        axis_run: tuple[Path, str, Path]) -> None:
    run_dir, _, marks = axis_run
    run = json.loads((run_dir / "run.json").read_text())
    described = {entry["tag"]: entry for entry in run["environment"]["interpreters"]}
    assert set(described) == {"current", "wrapped"}
    for entry in described.values():
        assert entry["version"] == platform.python_version()
        assert entry["gil_enabled"] is True and entry["free_threaded_build"] is False
    assert described["wrapped"]["env"] == {"CONCBENCH_MARK": "seen"}
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert set(records) == {"work200-c2-closed--epoll@current--r1",
                            "work200-c2-closed--epoll@wrapped--r1"}
    wrapped = records["work200-c2-closed--epoll@wrapped--r1"]
    assert wrapped["status"] == "ok", wrapped["failure"]
    assert wrapped["interpreter"].endswith("python-wrapper")
    assert wrapped["interpreter_env"] == {"CONCBENCH_MARK": "seen"}
    assert (wrapped["interpreter_version"], wrapped["gil_enabled"]) == (
        platform.python_version(), True)
    assert records["work200-c2-closed--epoll@current--r1"]["interpreter_env"] == {}
    # the variable reached the probe and the server (not the model listing, run without it)
    lines = marks.read_text().splitlines()
    assert any(line.startswith("seen -m servers epoll --host 127.0.0.1") for line in lines)
    assert not any("--list" in line for line in lines)


def test_report_compares_the_interpreters(axis_run: tuple[Path, str, Path]) -> None:
    run_dir, _, _ = axis_run
    text = (run_dir / "report.md").read_text()
    section = text.split("## Interpreters", 1)[1].split("\n## ", 1)[0]
    assert "| wrapped | " + platform.python_version() in section
    assert "CONCBENCH_MARK=seen" in section
    rows = [line for line in section.splitlines() if line.startswith("| work200-c2-closed")]
    assert [row.split(" | ")[2] for row in rows] == ["current", "wrapped"]
    assert rows[0].split(" | ")[5] == "1×" and "×" in rows[1].split(" | ")[5]
    assert "epoll@wrapped" in text.split("## Closed-loop cases", 1)[1]


def test_interpreter_entries_are_validated() -> None:
    for bad in ([{"path": "x", "env": {"A": 1}}], [{"path": "x", "env": "A=1"}],
                [{"path": "x", "gil": False}], [3]):
        with pytest.raises(ScenarioError, match="interpreter"):
            scenario.from_dict({"name": "t", "interpreters": bad, "group": [{"name": "g"}]})
    loaded = scenario.from_dict({"name": "t", "group": [{"name": "g"}], "interpreters": [
        "current", {"path": "freethreaded", "name": "ft-gil", "env": {"PYTHON_GIL": "1"}}]})
    specs, _ = planning.resolve_models(loaded, {"/a": ["epoll"], "/b": ["epoll"]},
                                       [("/a", "current", ()),
                                        ("/b", "ft-gil", (("PYTHON_GIL", "1"),))])
    (trial_a, trial_b) = planning.plan(loaded, specs)
    assert trial_a.server.interpreter_env == ()
    assert trial_b.server.interpreter_env == (("PYTHON_GIL", "1"),)
    assert trial_b.trial_id == "echo64-c16-closed--epoll@ft-gil--r1"


def test_ratio_is_clear_or_noise_by_repetitions(tmp_path: Path) -> None:
    """Three repetitions each: 2x apart is clear; 1% apart with overlapping spread is noise."""
    records = []
    # nine rounds: the paired test can call a gap clear only with enough of them
    for repeat, (gil, free, free_close) in enumerate([(300, 610, 303), (310, 600, 300),
                                                      (305, 590, 311)] * 3):
        records += [
            make_trial("work-c4-closed", "cpu", "threaded", repeat, 4, gil, tag="gil", gil=True),
            make_trial("work-c4-closed", "cpu", "threaded", repeat, 4, free, tag="free",
                       gil=False),
            make_trial("work-c16-closed", "cpu", "threaded", repeat, 16, gil, tag="gil",
                       gil=True),
            make_trial("work-c16-closed", "cpu", "threaded", repeat, 16, free_close, tag="free",
                       gil=False)]
    folder = write_run(tmp_path / "run", records, {"name": "synthetic"})
    text = report.to_markdown(report.build_report(folder))
    section = text.split("## Interpreters", 1)[1].split("\n## ", 1)[0]
    rows = {(row.split(" | ")[0].strip("| "), row.split(" | ")[2]): row.split(" | ")
            for row in section.splitlines() if row.startswith("| work-")}
    assert rows[("work-c4-closed", "free")][5] == "1.97× (clear)"
    assert rows[("work-c16-closed", "free")][5].endswith("(noise)")
    assert rows[("work-c4-closed", "gil")][3] == "enabled"
    assert rows[("work-c4-closed", "free")][3] == "disabled"
    assert "vs same build, GIL on" not in section  # nothing says they are one executable
    # described as one executable with its GIL on and off: the GIL's own ratio gets a column
    meta = json.loads((folder / "run.json").read_text())
    meta["environment"]["interpreters"] = [
        {"tag": "gil", "path": "/opt/python3.13t", "gil_enabled": True},
        {"tag": "free", "path": "/opt/python3.13t", "gil_enabled": False}]
    (folder / "run.json").write_text(json.dumps(meta))
    text = report.to_markdown(report.build_report(folder))
    section = text.split("## Interpreters", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| case |"))
    assert header.split(" | ")[6] == "vs same build, GIL on"
    row = next(line for line in section.splitlines()
               if line.startswith("| work-c4-closed | threaded | free |"))
    assert row.split(" | ")[6] == "1.97× (clear)"
