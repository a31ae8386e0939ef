"""The report's Resources section: a run folder with the out-of-descriptors probe's record
(bench/resources.py) shows each model's figures and how it breaks the rule, if it does."""

from __future__ import annotations

import json
from pathlib import Path

from _helpers_report import echo_run

from bench import resources
from bench.report import document as report


def _outcome(model: str, **changes: object) -> resources.Outcome:
    figures: dict[str, object] = {
        "model": model, "args": [], "alive": True, "limit_reached": True, "processes": 1,
        "held_first": resources.HELD, "held_again": resources.HELD, "cpu_percent": 0.5,
        "recovery_s": 0.21, "stderr_bytes": 120}
    return resources.Outcome(**(figures | changes))  # type: ignore[arg-type]


def _run(folder: Path) -> Path:
    return echo_run(folder, {"epoll": 50_000.0, "asyncio": 30_000.0})


def test_a_probe_record_in_the_run_folder_becomes_the_resources_section(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run")
    spinning = _outcome("asyncio", cpu_percent=97.0, recovery_s=None, stderr_bytes=22_135_275)
    record = resources.record([_outcome("epoll"), spinning])
    (folder / resources.RECORD_FILE).write_text(json.dumps(record))
    markdown = report.build_report(folder).paths["markdown"].read_text()
    assert "Resources: out of descriptors" in markdown
    assert "meets the rule" in markdown and "0.21 s" in markdown
    assert "spins: 97 % CPU while it cannot accept" in markdown
    assert "not in time" in markdown and "22,135,275" in markdown


def test_without_a_probe_record_there_is_no_resources_section(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run")
    assert "Resources:" not in report.build_report(folder).paths["markdown"].read_text()
