"""The cost probe and the gate's cost stage: stable figures, a costlier server caught, the
system calls a model must make, which models a change reaches, and the verdict's shape.

The probe tests run real servers under valgrind and strace (skipped, with the install line,
where those are missing); the reach and verdict tests use toy trees and a fake measurement.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import servers
from bench import REPO_ROOT
from bench.cost import command
from bench.cost.cases import CASES, ECHO_C1
from bench.cost.figures import syscall_figures
from bench.cost.syscalls import parse_summary
from bench.cost.tools import install_hint, missing_packages
from bench.cost.xray import xray_rows
from bench.regress import check as regress
from bench.regress import cost_stage
from bench.regress.model import Profile
from bench.regress.reach import files_run_by, reached_models
from bench.regress.verdict import EXIT_PASS, EXIT_REGRESSION

MISSING = missing_packages()
needs_tools = pytest.mark.skipif(bool(MISSING), reason=install_hint(MISSING))

# appended to a copy of servers/epoll.py: every wake-up of the epoll poller also spins an
# empty loop (a few percent more instructions per request, no system call added: the kind of
# change the timing stage cannot see on a busy machine); it wraps whatever poll() is inherited
# the poller binds its poll function per instance (PollLikePoller._bound_poll): wrap that
COSTLIER_POLL = """

_plain_bound_poll = EpollPoller._bound_poll


def _costlier_bound_poll(self):
    plain = _plain_bound_poll(self)

    def poll(timeout):
        for _ in range(3):
            pass
        return plain(timeout)

    return poll


EpollPoller._bound_poll = _costlier_bound_poll
"""


# --------------------------------------------------------------------------- the probe


@pytest.fixture(scope="module")
def epoll_a_a() -> cost_stage.SideFigures:
    """epoll's echo64-c1 measured twice from the same tree (both tools, in parallel)."""
    if MISSING:
        pytest.skip(install_hint(MISSING))
    roots = {"base": REPO_ROOT, "head": REPO_ROOT}
    return cost_stage.measure_sides(["epoll"], (ECHO_C1,), roots, 2, lambda message: None)


@needs_tools
def test_the_probe_is_stable(epoll_a_a: cost_stage.SideFigures) -> None:
    """Two runs of unchanged code agree within the gate's threshold, system calls exactly."""
    [result] = cost_stage.compare_all(["epoll"], (ECHO_C1,), epoll_a_a,
                                      cost_stage.DEFAULT_THRESHOLD_PCT)
    assert result.status == "pass", result
    change = result.instructions_per_request["change_pct"]
    assert change is not None and abs(change) < cost_stage.DEFAULT_THRESHOLD_PCT / 10
    assert 5_000 < result.instructions_per_request["base"] < 200_000  # Python, not a misread
    assert result.syscalls_per_request["base"] == result.syscalls_per_request["head"]


@needs_tools
def test_epoll_makes_the_system_calls_it_must(epoll_a_a: cost_stage.SideFigures) -> None:
    """One readiness wait, one receive, one send per request: nothing more, nothing less."""
    calls = epoll_a_a["head"]["epoll"]["cases"]["echo64-c1"]["syscalls_per_request"]
    assert calls["epoll_wait"] == 1.0
    assert calls["recvfrom"] == 1.0 and calls["sendto"] == 1.0
    assert calls["total"] == 3.0


@needs_tools
def test_a_costlier_server_is_caught(tmp_path: Path) -> None:
    """A head whose epoll poller spins an empty loop per wake-up: a confirmed regression."""
    head = tmp_path / "head"
    for package in ("servers", "protocol"):
        shutil.copytree(REPO_ROOT / package, head / package,
                        ignore=shutil.ignore_patterns("__pycache__", "build"))
    with (head / "servers" / "epoll.py").open("a") as source:
        source.write(COSTLIER_POLL)
    [result] = cost_stage.run_stage(["epoll"], {"base": REPO_ROOT, "head": head},
                                    cases=("echo64-c1",), progress=lambda message: None)
    assert result.status == "regression", result
    assert result.passes == 2
    assert 2.0 < result.instructions_per_request["change_pct"] < 10.0
    assert result.syscalls_per_request["change_pct"] == 0.0


def test_missing_tools_stop_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(command, "missing_packages", lambda needed: ["valgrind"])
    parser = command.argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([])) == command.EXIT_CANNOT_RUN
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "apt-get install -y valgrind" in line


# --------------------------------------------------------------------------- figures


def test_strace_summary_and_per_request_figures() -> None:
    text = """syscall              calls    errors
---------------- --------- ---------
recvfrom              1200       200
sendto                1000
---------------- --------- ---------
total                 2200       200
"""
    counts = parse_summary(text)
    assert counts == {"recvfrom": (1200, 200), "sendto": (1000, 0)}
    short = {"recvfrom": 220, "recvfrom!err": 20, "sendto": 200}
    long = {"recvfrom": 1200, "recvfrom!err": 200, "sendto": 1000}
    figures = syscall_figures(short, long, 800)
    assert figures["syscalls_per_request"] == {"recvfrom": 1.23, "sendto": 1.0, "total": 2.23}
    assert figures["syscall_errors_per_request"] == {"recvfrom": 0.23}


def test_xray_rows_give_a_report_its_columns() -> None:
    record = {"cases": {"echo64-c1": {}, "echo64-c16": {}},
              "models": {"epoll": {"error": None, "skipped": {}, "cases": {"echo64-c1": {
                  "instructions_per_request": 31780.0,
                  "syscalls_per_request": {"epoll_wait": 1.0, "recvfrom": 1.0, "total": 2.0}}}},
                  "iterative": {"error": None, "skipped": {"echo64-c16": "one at a time"},
                                "cases": {}}}}
    columns, rows = xray_rows(record)
    assert columns[:4] == ["model", "case", "instructions_per_request", "syscalls_per_request"]
    assert {"sys_epoll_wait", "sys_recvfrom"} <= set(columns)
    first = rows[0]
    assert first["syscalls_by_name"] == "epoll_wait 1 · recvfrom 1"
    assert first["syscalls_per_request"] == 2.0 and first["sys_recvfrom"] == 1.0
    assert rows[1]["note"] == "not measured"
    assert [r["note"] for r in rows if r["model"] == "iterative"] == ["not measured",
                                                                      "one at a time"]


def test_the_cases_the_issue_asks_for() -> None:
    assert {"echo64-c1", "echo64-c16", "work2k-c1"} <= set(CASES)
    assert set(cost_stage.GATE_CASES) <= set(CASES)
    for case in CASES.values():
        assert case.long > case.short >= 1 and case.warmup >= case.connections


# --------------------------------------------------------------------------- reach


@pytest.mark.parametrize(("changed", "expected"), [
    (["servers/epoll.py"], {"epoll", "prefork", "reactor"}),
    (["servers/threaded.py"], {"threaded", "threadpool", "iterative", "gevent"}),
    (["servers/native/server.c"], {"native"}),
    (["README.md", "bench/cost/run.py", "tests/test_cost.py"], set()),
])
def test_the_models_a_change_reaches(changed: list[str], expected: set[str]) -> None:
    found = set(reached_models(changed, servers.MODELS, REPO_ROOT))
    assert expected <= found
    if not expected:
        assert found == set()
    elif changed == ["servers/epoll.py"]:
        assert not found & {"threaded", "select", "poll", "asyncio"}


@pytest.mark.parametrize("shared", ["protocol/codec.py", "servers/_base.py",
                                    "servers/_eventloop.py"])
def test_a_shared_module_reaches_every_model(shared: str) -> None:
    assert set(reached_models([shared], servers.MODELS, REPO_ROOT)) == set(servers.MODELS)


def test_imports_are_followed_transitively(tmp_path: Path) -> None:
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "__init__.py").write_text("")
    (tmp_path / "servers" / "a.py").write_text("from servers import b\n")
    (tmp_path / "servers" / "b.py").write_text("import servers.c as c\n")
    (tmp_path / "servers" / "c.py").write_text("import os\n")
    (tmp_path / "servers" / "d.py").write_text("")
    assert files_run_by("servers.a", tmp_path) == {"servers/__init__.py", "servers/a.py",
                                                   "servers/b.py", "servers/c.py"}
    modules = {"a": "servers.a", "d": "servers.d"}
    assert reached_models(["servers/c.py"], modules, tmp_path) == {"a": "servers/c.py"}


# --------------------------------------------------------------------------- the gate


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


REGISTRY = """MODELS = {'a': 'servers.a', 'b': 'servers.b'}


def unavailable_reason(name):
    return None
"""


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A repository with models a and b (their own modules), and a head commit that changes b."""
    repo = tmp_path / "repo"
    (repo / "servers").mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "test")
    (repo / "servers" / "__init__.py").write_text(REGISTRY)
    for name in ("a", "b"):
        (repo / "servers" / f"{name}.py").write_text("X = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "servers" / "b.py").write_text("X = 2\n")
    git(repo, "commit", "-q", "-am", "change b")
    return repo


class FakeMeasure:
    """Figures as the probe gives them; the head's ``b`` costs ``factor`` times the base's."""

    def __init__(self, factor: float, extra_call: float = 0.0) -> None:
        self.factor, self.extra_call = factor, extra_call
        self.calls: list[list[str]] = []

    def __call__(self, models: list[str], cases: Any, roots: dict[str, Path], jobs: int,
                 progress: Any) -> cost_stage.SideFigures:
        self.calls.append(list(models))
        out: cost_stage.SideFigures = {}
        for side in ("base", "head"):
            worse = side == "head"
            out[side] = {m: {"error": None, "skipped": {}, "cases": {c.name: {
                "instructions_per_request": 30_000.0 * (self.factor if worse and m == "b"
                                                        else 1.0),
                "syscalls_per_request": {"epoll_wait": 1.0 + (self.extra_call if worse and
                                                              m == "b" else 0.0),
                                         "total": 1.0}} for c in cases}} for m in models}
        return out


def no_sampler() -> Any:
    raise AssertionError("the timing stage is not part of these checks")


def gate(repo: Path, tmp_path: Path, measure: FakeMeasure, **options: Any
         ) -> tuple[regress.GateVerdict, dict[str, Any]]:
    profile = Profile("t", None, (), samples=3, duration_s=0.1, warmup_s=0.0)
    settings = regress.Settings(base="HEAD~1", profile=profile, repo=repo, stages=("cost",),
                                json_path=tmp_path / "v.json", **options)
    verdict = regress.run_check(settings, no_sampler, lambda message: None, measure)
    regress.write_outputs(verdict, regress.markdown(verdict))
    return verdict, json.loads((tmp_path / "v.json").read_text())


def test_the_gate_measures_only_reached_models_and_names_the_regression(
        toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    measure = FakeMeasure(1.02)
    verdict, written = gate(toy, tmp_path, measure)
    assert measure.calls == [["b"], ["b"]]  # a is not reached; b is rerun to confirm
    assert verdict.exit_status == EXIT_REGRESSION
    assert verdict.reached == {"b": "servers/b.py"}
    result = written["cost"]["results"][0]
    assert [r["case"] for r in written["cost"]["results"]] == list(cost_stage.GATE_CASES)
    assert result["status"] == "regression" and result["model"] == "b"
    assert result["instructions_per_request"] == {"base": 30000.0, "head": 30600.0,
                                                  "change_pct": 2.0}
    assert set(result["syscalls_per_request"]) == {"base", "head", "change_pct"}
    assert "| b | echo64-c1 | 30,000 → 30,600 (+2.00%)" in capsys.readouterr().out


def test_the_gate_passes_small_changes_and_accepts_intended_ones(toy: Path,
                                                                 tmp_path: Path) -> None:
    verdict, _ = gate(toy, tmp_path, FakeMeasure(1.005))
    assert verdict.exit_status == EXIT_PASS
    assert {r.status for r in verdict.cost_results} == {"pass"}
    verdict, _ = gate(toy, tmp_path, FakeMeasure(1.05), accepted={"b"})
    assert verdict.exit_status == EXIT_PASS
    assert {r.status for r in verdict.cost_results} == {"accepted"}


def test_an_extra_system_call_at_one_connection_fails(toy: Path, tmp_path: Path) -> None:
    verdict, _ = gate(toy, tmp_path, FakeMeasure(1.0, extra_call=1.0),
                      cost_cases=("echo64-c1", "echo64-c16"))
    statuses = {r.case: r.status for r in verdict.cost_results}
    assert statuses == {"echo64-c1": "regression", "echo64-c16": "pass"}
    assert verdict.exit_status == EXIT_REGRESSION


def test_a_change_that_reaches_no_model_passes(toy: Path, tmp_path: Path) -> None:
    (toy / "README.md").write_text("docs\n")
    git(toy, "add", "README.md")
    git(toy, "commit", "-q", "-m", "docs")
    measure = FakeMeasure(2.0)
    settings = regress.Settings(base="HEAD~1", profile=Profile("t", None, (), 3, 0.1, 0.0),
                                repo=toy, stages=("cost",))
    verdict = regress.run_check(settings, no_sampler, lambda message: None, measure)
    assert measure.calls == [] and verdict.exit_status == EXIT_PASS
    assert "reaches no model" in verdict.verdict


def test_a_loop_that_races_the_client_is_shown_not_gated() -> None:
    """Fractional calls per request at one connection on the base: the counts follow timing."""
    def side(instructions: float, recvs: float) -> dict[str, Any]:
        return {"error": None, "skipped": {}, "cases": {"echo64-c1": {
            "instructions_per_request": instructions,
            "syscalls_per_request": {"recvfrom": recvs, "sendto": 1.0, "total": recvs + 1}}}}

    racy = cost_stage.compare("m", "echo64-c1", side(30_000, 1.16), side(33_000, 1.5), 1.0)
    assert racy.status == "not gated" and "1.16 recvfrom" in racy.note
    steady = cost_stage.compare("m", "echo64-c1", side(30_000, 1.0), side(30_000, 1.5), 1.0)
    assert steady.status == "flagged" and steady.flags == ["recvfrom +0.5/request"]
    many = cost_stage.compare("m", "echo64-c16", side(30_000, 1.16), side(30_000, 1.5), 1.0,
                              connections=16)
    assert many.status == "pass"  # system calls are not gated past one connection
