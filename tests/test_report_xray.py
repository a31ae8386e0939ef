"""The report's X-ray section: a run folder with the cost probe's record shows it."""

from __future__ import annotations

import json
from pathlib import Path

from _helpers_report import echo_run

from bench.report import document as report

PROBE = {"created": "2026-12-01T21:00:00+00:00",
         "cases": {"echo64-c1": {}, "echo64-c16": {}},
         "models": {"epoll": {"error": None, "skipped": {}, "cases": {
             "echo64-c1": {"instructions_per_request": 31115.0, "syscalls_per_request": {
                 "epoll_wait": 1.0, "recvfrom": 1.0, "sendto": 1.0, "total": 3.0}}}},
             "select": {"error": None, "skipped": {}, "cases": {
                 "echo64-c1": {"instructions_per_request": 32233.0, "syscalls_per_request": {
                     "pselect6": 1.0, "recvfrom": 1.0, "sendto": 1.0, "total": 3.0}}}}}}


def _run(folder: Path) -> Path:
    return echo_run(folder, {"epoll": 50_000.0, "select": 48_000.0})


def test_a_probe_record_in_the_run_folder_becomes_the_xray(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run")
    (folder / "cost.json").write_text(json.dumps(PROBE))
    built = report.build_report(folder)
    markdown = built.paths["markdown"].read_text()
    assert "X-ray: instructions and system calls per request" in markdown
    assert "31,115" in markdown and "pselect6 1" in markdown
    assert "Probe record cost.json (2026-12-01T21:00:00+00:00)" in markdown
    csv = (folder / "xray.csv").read_text().splitlines()
    assert csv[0].startswith("model,case,instructions_per_request,syscalls_per_request")
    assert "sys_pselect6" in csv[0] and len(csv) == 1 + 4  # two models x two cases


def test_without_a_probe_record_there_is_no_xray(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run")
    built = report.build_report(folder)
    assert "X-ray" not in built.paths["markdown"].read_text()
    assert not (folder / "xray.csv").exists()
