"""The swarm service: a long-lived swarm whose workers serve trial after trial, driven by the
runner over a socket, and dying with it (clients/service.py, bench/run/swarm_service.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from bench.environment import resolve_placement
from bench.run import planning, scenario
from bench.run.context import TrialContext
from bench.run.swarm_service import TOKEN_ENV, SwarmService
from bench.run.trial import run_trial
from clients import service as client_service

REPO = Path(__file__).resolve().parent.parent


def trials(*models: str, duration: float = 0.3, **top: object) -> list[scenario.TrialSpec]:
    loaded = scenario.from_dict({"name": "t", "duration_s": duration, "warmup_s": 0.1,
                                 "timeout_s": 1.0, **top,
                                 "group": [{"name": "echo", "connections": 4}]})
    return planning.plan(loaded, [scenario.ModelSpec(m, m, (), sys.executable) for m in models])


def service_context(tmp_path: Path) -> tuple[TrialContext, SwarmService]:
    placement = resolve_placement("split")
    service = SwarmService(placement.swarm_cpus, tmp_path / "service.log")
    return TrialContext(placement=placement, work_dir=tmp_path / "logs", run_id="t",
                        swarm_service=service), service


def workers_of(pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(pid).children(recursive=True)}


def test_the_token_names_agree() -> None:
    assert TOKEN_ENV == client_service.TOKEN_ENV


def test_trials_run_on_the_same_warm_workers(tmp_path: Path, reaped: None) -> None:
    """Two trials, one service process and the same worker processes; each record is the
    swarm's own, and the server's CPU is sampled at the window's two ends."""
    ctx, service = service_context(tmp_path)
    with service:
        service.start()
        pid, workers = service.proc.pid, workers_of(service.proc.pid)  # type: ignore[union-attr]
        assert workers
        records = [run_trial(spec, ctx) for spec in trials("epoll", "threaded")]
        assert service.proc.pid == pid and workers_of(pid) == workers  # type: ignore[union-attr]
        assert service.starts == 1
    assert service.proc is None and not psutil.pid_exists(pid)  # quit, and reaped
    for record in records:
        assert record["status"] == "ok", record["failure"]
        swarm = record["swarm"]
        assert swarm["tool"] == "concbench clients.swarm" and swarm["requests"] > 0
        assert swarm["connections_established"] == 4
        done = record["swarm_exit"]
        assert done["returncode"] == 0 and done["done_s"] >= done["end_s"]
        window, span = record["server"]["window_s"], record["server"]["span_s"]
        assert span == pytest.approx(window[1] - window[0], abs=0.01)
        assert record["derived"]["cpu_us_per_request"] > 0


def test_bad_arguments_fail_the_trial_and_the_service_serves_on(tmp_path: Path,
                                                                 reaped: None) -> None:
    ctx, service = service_context(tmp_path)
    spec = trials("epoll")[0]
    bad = replace(spec, case=replace(spec.case, swarm_args=("--arrivals", "sometimes")))
    with service:
        refused = run_trial(bad, ctx)
        fine = run_trial(spec, ctx)
        assert service.starts == 1
    assert refused["status"] == "failed"
    assert "swarm wrote no result (exit status 2)" in refused["failure"]
    assert "--arrivals" in (refused["swarm_stderr_tail"] or "")
    assert fine["status"] == "ok"


def test_a_trial_past_its_deadline_fails_and_the_next_gets_a_new_service(
        tmp_path: Path, reaped: None) -> None:
    ctx, service = service_context(tmp_path)
    ctx.swarm_allowance_s = -2.5  # the budget ends before the load does: a "hung" trial
    slow, quick = trials("epoll", duration=1.0), trials("epoll", duration=0.3)
    with service:
        hung = run_trial(slow[0], ctx)
        ctx.swarm_allowance_s = 10.0
        after = run_trial(quick[0], ctx)
        assert service.starts == 2
    assert hung["status"] == "failed" and "did not finish in time" in hung["failure"]
    assert hung["server_exit"]["returncode"] == 0
    assert after["status"] == "ok", after["failure"]


def test_the_service_and_its_workers_die_with_a_killed_runner(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from bench.run.swarm_service import SwarmService
        service = SwarmService(None, Path({str(tmp_path / 'service.log')!r}))
        service.start()
        print(service.proc.pid, flush=True)
        time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(runner.stdout.readline())  # type: ignore[union-attr]
        members = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        assert len(members) >= 2  # the service and its first worker
        runner.kill()
        runner.wait(timeout=5)
        _gone, alive = psutil.wait_procs(members, timeout=5)
        assert not alive
    finally:
        runner.kill()
        runner.wait(timeout=5)
        runner.stdout.close()  # type: ignore[union-attr]


def test_a_service_that_cannot_start_says_why(tmp_path: Path, reaped: None) -> None:
    from bench.run.swarm_service import ServiceError

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no swarm here' >&2\nexit 3\n")
    broken.chmod(0o755)
    service = SwarmService(None, tmp_path / "service.log", python=str(broken))
    start = time.monotonic()
    with pytest.raises(ServiceError, match="no swarm here"):
        service.start()
    assert time.monotonic() - start < 10


def test_a_server_stops_cleanly_under_the_service(tmp_path: Path, reaped: None) -> None:
    """The service's load ends (drained) before the server is stopped: SIGTERM, exit 0."""
    ctx, service = service_context(tmp_path)
    with service:
        record = run_trial(trials("asyncio")[0], ctx)
    assert record["status"] == "ok" and record["server_exit"]["returncode"] == 0
    assert record["swarm_exit"]["end_s"] <= record["timing"]["stopped_s"]


@pytest.mark.parametrize(("median_us", "sigma"), [(50, 0.3), (300, 1.0), (3000, 2.0),
                                                  (100_000, 1.5), (10_000_000, 0.5), (5, 3.0)])
def test_the_records_mean_is_hdrhistograms_own(median_us: float, sigma: float) -> None:
    """The swarm record's mean (clients._measure.mean_value, vectorised) is the number
    HdrHistogram's get_mean_value gives, which walked every bucket in Python after each run."""
    import numpy as np

    from clients._measure import HIST_HIGHEST_US, mean_value, new_histogram

    values = np.random.default_rng(int(median_us)).lognormal(np.log(median_us), sigma, 2000)
    histogram = new_histogram()
    assert mean_value(histogram) == histogram.get_mean_value() == 0.0
    for value in np.clip(values.astype(np.int64) + 1, 1, HIST_HIGHEST_US).tolist():
        histogram.record_value(value)
    histogram.record_value(HIST_HIGHEST_US)
    assert mean_value(histogram) == histogram.get_mean_value()


def test_every_swarm_setting_reaches_the_service() -> None:
    """The service builds its SwarmConfig from the swarm command's own parser, field by
    argument name: a setting named differently would be dropped without a word."""
    import dataclasses

    from clients.config import SwarmConfig

    args = ["--target", "127.0.0.1:1", "--connections", "7", "--json", "/x.json"]
    config, json_path = client_service.config_from(args)
    assert (config.connections, json_path) == (7, "/x.json")
    from clients.__main__ import build_parser

    options = build_parser().parse_args(["swarm", "--target", "h:1"])
    assert {f.name for f in dataclasses.fields(SwarmConfig)} <= set(vars(options))
