"""The versioned record: a trial's fields declared once, the format stamp, the one loader, and
format 0 read through its explicit upgrade (no processes)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from _helpers_report import make_spec, make_trial, write_run
from rich.console import Console

from bench import cli
from bench.analysis import frames
from bench.report import document as report
from bench.run import command
from bench.store import (
    FORMAT,
    RECORD_KEY,
    Case,
    ModelSpec,
    RecordError,
    RunStore,
    TrialSpec,
    load_run_folder,
)

# every key base_record wrote before the format field (docs/results-format.md): unchanged
RECORD_KEYS_BEFORE = {
    "trial_id", "run_id", "case", "group", "model", "server_model", "model_args",
    "interpreter", "interpreter_tag", "interpreter_env", "interpreter_version", "gil_enabled",
    "free_threaded_build", "repeat", "connections", "idle_connections", "connect_rate", "mix",
    "payload_bytes", "mode", "pipeline", "rate", "offered_fraction", "base_case", "slo_p99_ms",
    "swarm_args", "duration_s", "warmup_s", "timeout_s", "placement", "server_cpus",
    "swarm_cpus", "status", "failure", "stderr_tail", "swarm_stderr_tail", "notes",
    "started_at", "wall_s", "swarm", "swarm_exit", "server", "server_exit", "derived"}


def a_spec() -> TrialSpec:
    point = Case(name="echo64-c8-open-r50pct", group="sweep", mix="echo:64", payload_bytes=64,
                 connections=8, mode="open", pipeline=2, rate=None, fraction=0.5,
                 base="echo64-c8-closed", duration_s=1.5, warmup_s=0.25, timeout_s=4.0,
                 workers=3, slo_p99_ms=2.5, servers=("epoll",), swarm_args=("--x", "1"),
                 idle_connections=5, connect_rate=100.0, skip_servers=(("select", "why"),))
    server = ModelSpec("epoll@ft", "epoll", ("--trigger", "edge"), "/py", "ft",
                       (("PYTHON_GIL", "1"),))
    return TrialSpec(point, server, 2)


# ---------------------------------------------------------------- fields declared once


# added since, each documented in docs/results-format.md: the equal-load case, the workloads
# and the hosts of a run across hosts (None on one machine)
RECORD_KEYS_ADDED = {"equal_load_share", "requests_per_connection", "slowloris_connections",
                     "slowloris_interval_s", "reference_case", "hosts", "steady",
                     "min_requests", "max_duration_s", "server_cpu_count", "pause_at_s",
                     "pause_s", "case_rounds"}


def test_the_record_keys_are_unchanged_but_for_the_format() -> None:
    record = make_trial("echo64-c16-closed", "echo", "epoll", 1, 16, 1000.0)
    assert set(record) == RECORD_KEYS_BEFORE | RECORD_KEYS_ADDED | {"format"}
    assert record["format"] == FORMAT
    assert list(record)[:2] == ["format", "trial_id"]


def test_every_recorded_case_and_model_field_reaches_the_record_and_the_analysis() -> None:
    """A field of Case or ModelSpec is written under its record key (tuples as lists, the
    interpreter's environment as a table) and is one of the analysis's identity columns:
    adding one is one edit."""
    spec = a_spec()
    record = spec.as_record()
    assert list(record) == TrialSpec.record_fields()
    assert json.loads(json.dumps(record)) == record  # what a reader gets back
    for part in (spec.case, spec.server):
        for item in fields(part):
            key = item.metadata.get(RECORD_KEY, item.name)
            if key is None:
                assert item.name not in record
                continue
            value = getattr(part, item.name)
            expected = dict(value) if item.name == "interpreter_env" else (
                list(value) if isinstance(value, tuple) else value)
            assert record[key] == expected, key
            assert key in frames.ID_FIELDS, key
    assert (record["trial_id"], record["model"], record["repeat"]) == (
        "echo64-c8-open-r50pct--epoll@ft--r2", "epoll@ft", 2)
    assert record["offered_fraction"] == 0.5 and record["base_case"] == "echo64-c8-closed"
    assert {"workers", "servers", "skip_servers"}.isdisjoint(record)  # plan-only fields


def test_derived_properties_and_the_rate_a_sweep_learns() -> None:
    spec = a_spec()
    assert spec.sockets == 13 and spec.ramp_s() == pytest.approx(0.13)
    filled = spec.with_rate(1234.5)
    assert filled.case.rate == 1234.5 and filled.trial_id == spec.trial_id
    assert filled.as_record()["rate"] == 1234.5 and spec.case.rate is None
    sample = TrialSpec(spec.case, spec.server, 4, id_override="echo--epoll--head--s4")
    assert sample.trial_id == sample.as_record()["trial_id"] == "echo--epoll--head--s4"


def test_base_record_is_the_spec_then_where_it_ran() -> None:
    """make_trial goes through the runner's base_record: its identity is the spec's record."""
    record = make_trial("echo64-c16-closed", "cpu", "threaded", 3, 16, 500.0, tag="ft",
                        gil=False)
    spec = make_spec("echo64-c16-closed", "cpu", "threaded", 3, 16, tag="ft")
    assert {k: record[k] for k in TrialSpec.record_fields()} == spec.as_record()
    assert (record["interpreter_version"], record["gil_enabled"]) == ("3.13.0", False)
    assert (record["placement"], record["server_cpus"], record["swarm_cpus"]) == (
        "split", [0], [1])


# ---------------------------------------------------------------- format 0 and newer formats


def format_0_folder(folder: Path) -> Path:
    """A run folder as written before the format field, with the two things format 1 reads
    from one place missing from its records: the SLO and the histogram's unit."""
    records = [make_trial("sweep-c16-open-r10pct", "sweep", "epoll", 0, 16, 1000.0,
                          mode="open", rate=1000.0, fraction=0.1, p50_us=300),
               make_trial("echo64-c16-closed", "echo", "epoll", 0, 16, 9000.0)]
    spec = {"name": "old", "slo_p99_ms": 7.0,
            "cases": [{"name": "sweep-c16-open-r10pct", "slo_p99_ms": 1.5},
                      {"name": "echo64-c16-closed"}]}
    write_run(folder, records, spec)
    meta = json.loads((folder / "run.json").read_text())
    del meta["format"]
    (folder / "run.json").write_text(json.dumps(meta))
    for path in (folder / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        for key in ("format", "slo_p99_ms"):
            del record[key]
        del record["swarm"]["histogram_unit"]
        path.write_text(json.dumps(record))
    return folder


def test_format_0_is_read_through_its_upgrade(tmp_path: Path) -> None:
    loaded = load_run_folder(format_0_folder(tmp_path / "run"))
    assert loaded.meta["format"] == FORMAT and loaded.unreadable == []
    sweep = loaded.trials["sweep-c16-open-r10pct--epoll--r0"]
    closed = loaded.trials["echo64-c16-closed--epoll--r0"]
    assert sweep["format"] == closed["format"] == FORMAT
    assert sweep["slo_p99_ms"] == 1.5  # its case's, from scenario_spec.cases
    assert closed["slo_p99_ms"] == 7.0  # the case names none: the scenario's
    assert sweep["swarm"]["histogram_unit"] == "us"  # the only unit the swarm has written
    built = report.build_report(tmp_path / "run")
    assert built.sweeps[0].slo_us == 1500.0
    assert any(c.path.name == "latency_spectrum.png" for c in built.charts)
    assert RunStore(tmp_path / "run").load_trials() == loaded.trials  # the runner's reader


def test_a_format_0_run_is_not_resumed(tmp_path: Path) -> None:
    folder = format_0_folder(tmp_path / "run")
    with pytest.raises(command.RunRefused, match=rf"cannot resume {folder}: .*format 0"):
        command.prepare_resume(folder, Console(quiet=True))


@pytest.mark.parametrize("where", ["run.json", "trial"])
def test_a_newer_format_is_refused_naming_the_file(tmp_path: Path, where: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    folder = write_run(tmp_path / "run", [make_trial("e-c1-closed", "echo", "epoll", 0, 1,
                                                     10.0)], {"name": "new"})
    path = folder / "run.json" if where == "run.json" else folder / "trials" / \
        "e-c1-closed--epoll--r0.json"
    data: dict[str, Any] = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": FORMAT + 1}))
    with pytest.raises(RecordError, match=rf"{path}: record format {FORMAT + 1} is newer"):
        load_run_folder(folder)
    assert cli.main(["report", str(folder)]) == 2
    out = capsys.readouterr().err.replace("\n", "")
    assert path.name in out and "is newer than this concbench reads" in out


def test_unreadable_trial_files_are_listed_not_fatal(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", [], {"name": "x"})
    (folder / "trials" / "half.json").write_text("{bad")
    (folder / "trials" / "list.json").write_text("[1, 2]")
    loaded = load_run_folder(folder)
    assert loaded.trials == {}
    assert [line.split(":")[0] for line in loaded.unreadable] == ["half.json", "list.json"]
    assert "not a trial record" in loaded.unreadable[1]
    with pytest.raises(RecordError, match="not a run folder"):
        load_run_folder(tmp_path)
