"""The bench runner: trial records end to end, faults, Ctrl-C, --resume, child processes.

End-to-end tests run the real CLI (``python -m bench run``) on tiny scenarios against real
servers and the real swarm, and check what lands in the run folder and that no process
outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from _helpers import write_scenario

from bench import procs, sampling
from bench.analysis.histograms import decode_histogram
from bench.environment import Placement, resolve_placement
from bench.launch import LaunchedServer, LaunchFailed
from bench.run import planning, scenario
from bench.run.context import LOCAL, TrialContext, server_command
from bench.run.rates import choose_equal_load, sweep_rate
from bench.run.runner import Runner
from bench.run.swarm_run import SwarmRun, measured_window, swarm_arguments
from bench.run.trial import derive, run_trial
from bench.sampling import summarize_server
from bench.store import FORMAT, RunStore

REPO = Path(__file__).resolve().parent.parent
LAYOUT_KEYS = {
    "format", "trial_id", "run_id", "case", "group", "model", "model_args", "interpreter", "repeat",
    "connections", "mix", "payload_bytes", "mode", "pipeline", "rate", "offered_fraction",
    "duration_s", "warmup_s", "placement", "status", "failure", "stderr_tail", "started_at",
    "wall_s", "swarm", "server", "derived"}
SERVER_KEYS = {"samples", "cpu_user_s", "cpu_system_s", "cpu_percent", "rss_max", "rss_mean",
               "threads_max", "fds_max", "ctx_switches"}
SAMPLE_KEYS = {"t", "cpu_user", "cpu_system", "rss", "threads", "fds", "ctx_voluntary",
               "ctx_involuntary"}
DERIVED_KEYS = {"throughput_rps", "p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us",
                "cpu_us_per_request", "rss_per_connection_bytes", "ctx_switches_per_request",
                "error_rate", "errors", "client_saturated", "server_cpu_percent", "requests"}


def bench_cli(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO,
                            start_new_session=True, **popen)  # type: ignore[call-overload]


def load_records(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}


class Watch:
    """Every process below ``pid``, remembered (with its start time) as long as it lives."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.03):
            for proc in procs.tree(self.pid)[1:]:
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault(proc.pid, proc.create_time())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def survivors(self) -> list[int]:
        alive = []
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                pass
        return alive


# -- end to end ------------------------------------------------------------------------------


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    """Two models, a closed-loop case and a sweep point scaled to it: records, run.json,
    environment, the derived figures, and (when bench.report.document is there) the report."""
    # its own scenario, two models' closed case and a sweep point (tests/test_classics.py writes
    # one of the same shape for a pause, two CPUs and rounds): each test names the cases it needs
    path = write_scenario(tmp_path, """
        name = "tiny"
        duration_s = 0.6
        warmup_s = 0.2
        timeout_s = 1.0
        slo_p99_ms = 3.0
        [[group]]
        name = "sweep"
        mix = "echo:64"
        connections = [4]
        mode = "open"
        fractions = [0.5]
    """)
    run_dir = tmp_path / "run"
    with (tmp_path / "out.txt").open("wb") as out:
        cli = bench_cli("run", "--scenario", str(path), "--servers", "epoll,threaded",
                        "--out", str(run_dir), stdout=out, stderr=subprocess.STDOUT)
        watch = Watch(cli.pid)
        try:
            status = cli.wait(timeout=100)
        finally:
            watch.stop()
            procs.stop(cli, grace_s=1)  # only acts if the CLI is still running (a failure)
    output = (tmp_path / "out.txt").read_text()
    assert status == 0, output
    assert watch.seen and watch.survivors() == []

    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "complete" and run["finished_at"] and run["scenario"] == "tiny"
    assert run["format"] == FORMAT
    assert run["plan"] == ["echo64-c4-closed--epoll--r1", "echo64-c4-closed--threaded--r1",
                           "echo64-c4-open-r50pct--epoll--r1",
                           "echo64-c4-open-r50pct--threaded--r1"]
    assert run["scenario_spec"]["slo_p99_ms"] == 3.0
    env = run["environment"]
    for key in ("python", "kernel", "cpu_model", "cpu_count", "placement", "packages", "git",
                "load_average_before", "load_average_after"):
        assert env[key] is not None, key
    assert isinstance(env["python"]["gil_enabled"], bool) and env["git"]["revision"]

    records = load_records(run_dir)
    assert sorted(records) == sorted(run["plan"])
    for trial_id, record in records.items():
        assert set(record) >= LAYOUT_KEYS, trial_id
        assert record["status"] == "ok", (trial_id, record["failure"], record["stderr_tail"])
        assert record["run_id"] == run["run_id"] and record["trial_id"] == trial_id
        assert record["format"] == FORMAT and record["slo_p99_ms"] == 3.0
        # the histogram's unit is the swarm's own field, and the report reads it as recorded
        assert record["swarm"]["histogram_unit"] == "us"
        histogram, scale = decode_histogram(record["swarm"])
        assert scale == 1.0 and histogram.get_total_count() == record["swarm"]["requests"]
        assert set(record["server"]) >= SERVER_KEYS
        assert len(record["server"]["samples"]) >= 5
        assert set(record["server"]["samples"][0]) >= SAMPLE_KEYS
        derived = record["derived"]
        assert set(derived) >= DERIVED_KEYS  # the documented ones; later additions beside
        assert derived["throughput_rps"] > 0 and derived["requests"] > 0
        assert derived["p99_us"] >= derived["p50_us"] > 0
        assert derived["cpu_us_per_request"] > 0 and derived["server_cpu_percent"] > 0
        assert record["swarm"]["connections"] == 4
    for model in ("epoll", "threaded"):
        base = records[f"echo64-c4-closed--{model}--r1"]
        point = records[f"echo64-c4-open-r50pct--{model}--r1"]
        assert base["mode"] == "closed" and point["mode"] == "open"
        assert point["offered_fraction"] == 0.5 and point["base_trial"] == base["trial_id"]
        assert point["rate"] == pytest.approx(0.5 * base["derived"]["throughput_rps"])
        assert point["swarm"]["rate"] == pytest.approx(point["rate"], rel=0.01)
    assert "Summary" in output and "epoll" in output
    summary = (run_dir / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(records)
    html = (run_dir / "report.html").read_text()
    assert "epoll" in html and "threaded" in html


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _servers_below(pid: int) -> list[psutil.Process]:
    found = []
    for proc in procs.tree(pid)[1:]:
        try:
            cmdline = proc.cmdline()
            if "servers" in cmdline and "--list" not in cmdline:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_sigint_mid_run_keeps_finished_trials_kills_children_and_resume_completes(
        tmp_path: Path) -> None:
    # its own scenario, long enough to stop mid-run (alike in shape to the one above and to
    # tests/test_classics.py's, whose cases are theirs)
    path = write_scenario(tmp_path, """
        name = "tiny"
        duration_s = 1.0
        warmup_s = 0.2
        timeout_s = 1.0
        [[group]]
        name = "echo"
        connections = [2, 4]
    """)
    run_dir = tmp_path / "run"
    log = tmp_path / "out.txt"
    with log.open("wb") as out:
        cli = bench_cli("run", "--scenario", str(path), "--servers", "epoll,threaded",
                        "--out", str(run_dir), "--no-report", stdout=out,
                        stderr=subprocess.STDOUT)
        watch = Watch(cli.pid)
        try:
            _wait_for(lambda: len(list((run_dir / "trials").glob("*.json"))) >= 1, 60,
                      "the first trial record")
            _wait_for(lambda: bool(_servers_below(cli.pid)), 30, "the second trial's server")
            time.sleep(0.3)  # the swarm is running now
            sent = time.monotonic()
            cli.send_signal(signal.SIGINT)
            status = cli.wait(timeout=15)
            took = time.monotonic() - sent
        finally:
            watch.stop()
            procs.stop(cli, grace_s=1)
    assert status == 130, log.read_text()
    assert took < 6, f"took {took:.1f} s to stop"
    assert watch.survivors() == []
    assert len(watch.seen) >= 4  # servers and swarms of two trials, and their workers
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted"
    kept = load_records(run_dir)
    assert 1 <= len(kept) < len(run["plan"])
    assert all(r["status"] == "ok" for r in kept.values())
    assert not list((run_dir / "trials").glob(".*tmp"))
    assert "--resume" in log.read_text()

    resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir),
                              "--no-report"], cwd=REPO, capture_output=True, text=True,
                             timeout=100)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(kept)} of {len(run['plan'])} trials already done" in resumed.stdout
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "complete" and len(run["resumed_at"]) == 1
    records = load_records(run_dir)
    assert sorted(records) == sorted(run["plan"])
    for trial_id, record in kept.items():  # finished trials were not run again
        assert records[trial_id]["started_at"] == record["started_at"]


def test_second_sigint_stops_at_once(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, """
        name = "tiny"
        duration_s = 5.0
        warmup_s = 0.2
        [[group]]
        name = "echo"
        connections = [2]
    """)
    cli = bench_cli("run", "--scenario", str(path), "--servers", "threaded", "--out",
                    str(tmp_path / "run"), "--no-report", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    watch = Watch(cli.pid)
    try:
        _wait_for(lambda: len(_servers_below(cli.pid)) >= 1 and len(watch.seen) >= 2, 30,
                  "the server and the swarm")
        cli.send_signal(signal.SIGINT)
        time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        start = time.monotonic()
        status = cli.wait(timeout=15)
        took = time.monotonic() - start
    finally:
        watch.stop()
        procs.stop(cli, grace_s=1)
    assert status == 130 and took < 4
    assert watch.survivors() == []
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"


def test_bad_usage_is_a_clear_error(tmp_path: Path) -> None:
    for args, message in ((["--scenario", "nope"], "unknown scenario"),
                          (["--servers", "nosuchmodel"], "unknown server(s) nosuchmodel"),
                          (["--resume", str(tmp_path)], "not a run folder"),
                          (["--resume", str(tmp_path), "--repeat", "2"], "drop --repeat")):
        done = subprocess.run([sys.executable, "-m", "bench", "run", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and message not in done.stdout


# -- faults inside one run (in process) --------------------------------------------------------


def tiny_trials(models: tuple[str, ...], duration: float = 1.5, **top: object
                ) -> list[scenario.TrialSpec]:
    loaded = scenario.from_dict({"name": "t", "duration_s": duration, "warmup_s": 0.2,
                                 "timeout_s": 1.0, **top,
                                 "group": [{"name": "echo", "connections": 2}]})
    specs = [scenario.ModelSpec(m, m, (), sys.executable) for m in models]
    return planning.plan(loaded, specs)


def context(tmp_path: Path) -> TrialContext:
    return TrialContext(placement=resolve_placement("split"), work_dir=tmp_path / "logs",
                        run_id="test")


def test_server_killed_mid_trial_is_a_failed_trial_and_the_run_goes_on(
        tmp_path: Path, reaped: None) -> None:
    trials = tiny_trials(("epoll", "threaded"))
    store = RunStore.create(tmp_path / "run")
    ctx = context(store.run_dir)  # logs in the run folder's logs/
    killed: list[int] = []

    def killer() -> None:  # SIGKILL the first server once its swarm has started
        swarm_log = store.logs_dir / f"{trials[0].trial_id}.swarm.err"
        deadline = time.monotonic() + 30
        while not swarm_log.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        for proc in _servers_below(os.getpid()):
            if "epoll" in proc.cmdline():
                proc.kill()
                killed.append(proc.pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = Runner(store, trials, ctx).run()
    thread.join(timeout=5)
    assert killed and result.status == "complete"
    first, second = (result.records[t.trial_id] for t in trials)
    assert first["status"] == "failed"
    assert "server exited with status -9 during the trial" in first["failure"]
    assert first["server_exit"]["crashed"] is True
    assert first["server"]["samples"]  # what was measured before the crash is kept
    assert second["status"] == "ok" and second["derived"]["throughput_rps"] > 0
    assert store.has_trial(first["trial_id"]) and store.has_trial(second["trial_id"])


def fake_interpreter(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(("script", "failure", "in_tail"), [
    ("echo 'booting slowly' >&2\nexec sleep 30", "did not print READY within 1 s",
     "booting slowly"),
    ("echo 'Traceback: boom' >&2\nexit 3", "exited with status 3 before READY", "boom"),
    ("echo 'READY nonsense'\nexec sleep 30", "malformed READY line", None),
])
def test_a_server_that_never_becomes_ready_is_a_failed_trial(
        tmp_path: Path, reaped: None, script: str, failure: str, in_tail: str | None) -> None:
    spec = tiny_trials(("epoll",), ready_timeout_s=1.0)[0]
    spec = replace(spec, server=replace(spec.server,
                                        interpreter=fake_interpreter(tmp_path, script)))
    start = time.monotonic()
    record = run_trial(spec, context(tmp_path))
    assert time.monotonic() - start < 6
    assert record["status"] == "failed" and failure in record["failure"]
    if in_tail:
        assert in_tail in record["stderr_tail"]
    assert record["swarm"] is None and record["derived"]["throughput_rps"] is None
    assert not [p for p in psutil.Process().children(recursive=True)
                if "sleep" in " ".join(p.cmdline())]


class RecordingLauncher:
    """A ServerLauncher that starts the server on this machine, as LOCAL does, and says so;
    or refuses, as a server host that cannot be used does."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.launched: list[str] = []

    def launch(self, spec: scenario.TrialSpec, context: TrialContext, out_path: Path,
               err_path: Path) -> LaunchedServer:
        if self.refuse:
            raise LaunchFailed(self.refuse)
        self.launched.append(spec.trial_id)
        return LOCAL.launch(spec, context, out_path, err_path)


def test_the_contexts_launcher_starts_every_server(tmp_path: Path, reaped: None) -> None:
    """Where a server runs is the context's launcher (this machine, or the server host of
    bench/hosts), not a branch in the trial: a launcher's refusal is that trial's failure."""
    spec = tiny_trials(("epoll",), duration=0.5)[0]
    launcher = RecordingLauncher()
    record = run_trial(spec, replace(context(tmp_path), launcher=launcher))
    assert launcher.launched == [spec.trial_id] and record["status"] == "ok"
    refused = run_trial(spec, replace(context(tmp_path / "again"),
                                      launcher=RecordingLauncher("host server went away")))
    assert refused["status"] == "failed" and refused["failure"] == "host server went away"
    assert refused["swarm"] is None


def test_a_stop_request_before_a_trial_ends_the_run_at_once(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    ctx = context(store.logs_dir)
    ctx.stop.set()
    result = Runner(store, tiny_trials(("epoll",)), ctx).run()
    assert result.status == "interrupted" and result.ran == 0 and not store.load_trials()


# -- child processes ---------------------------------------------------------------------------


def test_children_are_pinned_and_stopped(reaped: None) -> None:
    cpus = sorted(os.sched_getaffinity(0))[:1]
    child = procs.spawn(["sleep", "30"], cpus=cpus)
    _wait_for(lambda: psutil.Process(child.pid).name() == "sleep", 5, "exec")
    assert psutil.Process(child.pid).cpu_affinity() == cpus
    assert os.getpgid(child.pid) == child.pid  # a process group of its own
    stopped = procs.stop(child, grace_s=2)
    assert stopped.returncode == -signal.SIGTERM and not stopped.killed
    assert child.pid not in procs.live_children()


def test_a_tree_that_ignores_sigterm_is_killed(reaped: None) -> None:
    child = procs.spawn(["sh", "-c", "trap '' TERM; sleep 30 & sleep 30 & wait"])
    _wait_for(lambda: len(procs.tree(child.pid)) >= 3, 5, "the grandchildren")
    members = procs.tree(child.pid)
    stopped = procs.stop(child, grace_s=0.3)
    assert stopped.killed and stopped.seconds < 3
    assert not [m for m in members if m.is_running() and m.status() != psutil.STATUS_ZOMBIE]


def test_a_server_gets_sigterm_alone_and_its_leftovers_are_killed(reaped: None) -> None:
    """Launch contract: SIGTERM goes to the server process; what it leaves is SIGKILLed."""
    child = procs.spawn(["sh", "-c", "sleep 30 & wait"])
    _wait_for(lambda: len(procs.tree(child.pid)) >= 2, 5, "the grandchild")
    members = procs.tree(child.pid)
    stopped = procs.stop(child, grace_s=0.5, whole_group=False)
    assert stopped.returncode == -signal.SIGTERM and stopped.killed
    assert not [m for m in members if m.is_running() and m.status() != psutil.STATUS_ZOMBIE]


def test_children_die_with_a_killed_runner(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: even a SIGKILLed runner leaves no child behind."""
    code = ("import sys, time\nfrom bench import procs\n"
            "child = procs.spawn(['sleep', '30'])\nprint(child.pid, flush=True)\ntime.sleep(30)")
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(runner.stdout.readline())  # type: ignore[union-attr]
        _wait_for(lambda: psutil.Process(pid).name() == "sleep", 5, "exec")
        child = psutil.Process(pid)
        runner.kill()
        runner.wait(timeout=5)
        child.wait(timeout=5)  # raises TimeoutExpired if the child outlives the runner
    finally:
        runner.kill()
        runner.wait(timeout=5)
        runner.stdout.close()  # type: ignore[union-attr]


# -- figures -----------------------------------------------------------------------------------


def samples(*rows: tuple[float, float, int, int]) -> list[dict]:
    """(t, cpu seconds so far, rss, context switches so far) -> sample dicts."""
    return [{"t": t, "cpu_user": cpu * 0.75, "cpu_system": cpu * 0.25, "rss": rss, "threads": 2,
             "fds": 10, "ctx_voluntary": ctx, "ctx_involuntary": 0, "procs": 1}
            for t, cpu, rss, ctx in rows]


def test_server_figures_over_the_measured_window() -> None:
    rows = samples((0.0, 0.0, 1000, 0), (0.5, 0.05, 1000, 10), (1.0, 0.5, 5000, 100),
                   (1.5, 1.0, 9000, 200), (2.0, 1.5, 7000, 300), (2.5, 1.5, 7000, 300))
    for row in rows[1:]:
        row["fds"] = 110  # the 100 connections held, over the 10 descriptors before them
    server = summarize_server(rows, (0.9, 2.1), idle_before=0.6)
    assert server["span_s"] == pytest.approx(1.0)  # samples inside the window: 1.0 .. 2.0
    assert server["cpu_user_s"] + server["cpu_system_s"] == pytest.approx(1.0)
    assert server["cpu_percent"] == pytest.approx(100.0)
    assert server["rss_max"] == 9000 and server["rss_idle"] == 1000
    assert server["ctx_switches"] == 200
    swarm = {"requests": 10_000, "duration_s": 1.0, "throughput_rps": 10_000.0,
             "latency_us": {"p50": 100, "p99": 900}, "errors": {"timeout": 0},
             "client": {"saturated": False}}
    derived = derive(swarm, server, connections=100)
    assert derived["cpu_us_per_request"] == pytest.approx(100.0)
    assert derived["ctx_switches_per_request"] == pytest.approx(0.02)
    assert derived["rss_per_connection_bytes"] == pytest.approx(80.0)
    assert derived["error_rate"] == 0.0 and derived["p99_us"] == 900
    # a server that held 25 of the 100: its growth is divided by the 25
    for row in rows[1:]:
        row["fds"] = 35
    held = derive(swarm, summarize_server(rows, (0.9, 2.1), idle_before=0.6), connections=100)
    assert held["rss_per_connection_bytes"] == pytest.approx(320.0)


def test_cpu_per_request_comes_from_the_nanosecond_clock_at_the_windows_edges() -> None:
    """Samples taken at the window's edges carry cpu_ns (bench/sampling.py): 0.4 s of CPU over
    the window, not the 10 ms ticks' 1.0 s, decides the figure."""
    rows = samples((0.0, 0.0, 1000, 0), (1.0, 0.5, 5000, 100), (2.0, 1.5, 7000, 300))
    rows[1]["cpu_ns"], rows[2]["cpu_ns"] = 1_000_000_000, 1_400_000_000
    server = summarize_server(rows, (1.0, 2.0), idle_before=0.5)
    assert server["cpu_ns"] == 400_000_000 and server["cpu_ns_span_s"] == pytest.approx(1.0)
    swarm = {"requests": 10_000, "duration_s": 1.0, "throughput_rps": 10_000.0,
             "latency_us": {"p50": 100, "p99": 900}, "errors": {}, "client": {}}
    assert derive(swarm, server, connections=10)["cpu_us_per_request"] == pytest.approx(40.0)


def test_the_process_cpu_clock_counts_threads_that_have_ended(tmp_path: Path) -> None:
    """bench.sampling.process_cpu_ns reads a child's CPU clock: a thread that spun and ended is
    still in it (the live threads' schedstat has lost it)."""
    code = ("import threading, time\n"
            "def spin():\n"
            "    end = time.process_time() + 0.2\n"
            "    while time.process_time() < end: pass\n"
            "t = threading.Thread(target=spin); t.start(); t.join()\n"
            "print('done', flush=True); time.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        total, live = sampling.process_cpu_ns(child.pid), sampling.thread_cpu_ns(child.pid)
        assert total is not None and live is not None
        # the ended thread's 0.2 s is in the clock only (the live main thread's own start-up
        # CPU is in both, and grows on a loaded machine: only the difference is the claim)
        assert total - live >= 150_000_000
    finally:
        child.kill()
        child.wait()


def test_figures_that_cannot_be_computed_are_none() -> None:
    derived = derive(None, None, connections=4)
    assert derived["throughput_rps"] is None and derived["cpu_us_per_request"] is None
    assert derived["client_saturated"] is False
    short = summarize_server(samples((0.0, 0.0, 1, 0)), (0.0, 1.0), idle_before=0.0)
    assert short["cpu_percent"] is None
    errors = derive({"requests": 90, "errors": {"timeout": 6, "reset": 4}, "duration_s": 1.0,
                     "client": {"saturated": True}}, None, 4)
    assert errors["error_rate"] == pytest.approx(0.1) and errors["client_saturated"]


def test_the_swarms_window_is_used_when_it_gives_one() -> None:
    run = SwarmRun(0, start_s=1.0, end_s=4.0, timed_out=False)
    swarm = {"duration_s": 2.0, "window": {"monotonic_start_s": 101.5, "monotonic_end_s": 103.5}}
    assert measured_window(swarm, run, t0=100.0, t0_wall=5000.0, duration_s=2.0) == (1.5, 3.5)
    wall = {"window": {"unix_start_s": 5001.0, "unix_end_s": 5003.0}}
    assert measured_window(wall, run, t0=100.0, t0_wall=5000.0, duration_s=2.0) == (1.0, 3.0)
    assert measured_window(None, run, t0=100.0, t0_wall=5000.0, duration_s=2.0) == (2.0, 4.0)


def test_sweep_rates_come_from_the_models_closed_loop_maximum() -> None:
    loaded = scenario.from_dict({"name": "t", "repeat": 2, "group": [
        {"name": "s", "label": "s", "mode": "open", "fractions": [0.5], "connections": 4}]})
    trials = planning.plan(loaded, [scenario.ModelSpec("m", "m", (), "py")])
    point_r2 = [t for t in trials if t.case.fraction and t.repeat == 2][0]

    def ok(rps: float) -> dict:
        return {"status": "ok", "derived": {"throughput_rps": rps}}

    records = {"s-c4-closed--m--r1": ok(1000.0), "s-c4-closed--m--r2": ok(3000.0)}
    assert sweep_rate(point_r2, records) == (1500.0, "s-c4-closed--m--r2")
    records["s-c4-closed--m--r2"] = {"status": "failed", "derived": {}}
    assert sweep_rate(point_r2, records) == (500.0, "s-c4-closed--m--r1")
    message = sweep_rate(point_r2, {})
    assert isinstance(message, str) and "no closed-loop maximum for m" in message


def test_placement() -> None:
    assert resolve_placement("split", cpus=[0, 1, 2, 3]) == Placement("split", (0,), (1, 2, 3))
    assert resolve_placement("split", 2, cpus=[0, 1, 2, 3]).server_cpus == (0, 1)
    assert resolve_placement("same", cpus=[0, 1]) == Placement("same", (0,), (0,))
    assert resolve_placement("none", cpus=[0, 1]) == Placement("none", None, None)
    single = resolve_placement("split", cpus=[3])
    assert single.name == "same" and single.server_cpus == (3,) and single.note


def test_swarm_and_server_command_lines() -> None:
    loaded = scenario.from_dict({"name": "t", "swarm_args": ["--connect-rate", "500"], "group": [
        {"name": "o", "mode": "open", "rates": [2000], "connections": 8, "pipeline": 2},
        {"name": "c", "connections": 3, "swarm_args": []}]})
    spec = scenario.ModelSpec("edge", "epoll", ("--trigger", "edge"), "/py")
    opened, closed = planning.plan(loaded, [spec])
    args = swarm_arguments(opened, "127.0.0.1", 4242, 1, Path("/x.json"))
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--target"] == "127.0.0.1:4242" and pairs["--mode"] == "open"
    assert pairs["--rate"] == "2000.0" and pairs["--connections"] == "8"
    assert pairs["--pipeline"] == "2" and pairs["--json"] == "/x.json"
    assert args[-2:] == ["--connect-rate", "500"]
    assert "--rate" not in swarm_arguments(closed, "h", 1, 1, Path("/x"))
    assert "--connect-rate" not in swarm_arguments(closed, "h", 1, 1, Path("/x"))
    assert server_command(opened) == ["/py", "-m", "servers", "epoll", "--host", "127.0.0.1",
                                      "--port", "0", "--trigger", "edge"]


@pytest.mark.parametrize(("script", "failure"), [
    ("sleep 60", "swarm did not finish in time"),
    ("echo 'cannot connect' >&2; exit 2", "swarm wrote no result (exit status 2)"),
    ("exit 0", "swarm wrote no result (exit status 0)"),
])
def test_a_swarm_that_hangs_or_fails_is_a_failed_trial(tmp_path: Path, reaped: None,
                                                       script: str, failure: str) -> None:
    spec = tiny_trials(("epoll",), duration=0.3, timeout_s=0.2)[0]
    ctx = context(tmp_path)
    ctx.swarm_command = ["sh", "-c", script, "fake-swarm"]
    ctx.swarm_allowance_s = 0.5
    start = time.monotonic()
    record = run_trial(spec, ctx)
    assert time.monotonic() - start < 8
    assert record["status"] == "failed" and failure in record["failure"], record["failure"]
    assert record["server_exit"]["returncode"] == 0  # the server was stopped cleanly
    if "cannot connect" in script:
        assert "cannot connect" in record["swarm_stderr_tail"]
    assert not [p for p in psutil.Process().children(recursive=True)
                if "sleep" in " ".join(p.cmdline())]


# -- equal offered load ------------------------------------------------------------------------


def _equal_trials(share: float = 0.5, connections: int = 16) -> list[scenario.TrialSpec]:
    loaded = scenario.from_dict({"name": "t", "group": [
        {"name": "echo", "connections": connections},
        {"name": "equal", "mode": "open", "connections": connections, "equal_load": share,
         "base": f"echo64-c{connections}-closed"}]})
    models = [scenario.ModelSpec(m, m, (), "py") for m in ("epoll", "iterative", "native")]
    return [t for t in planning.plan(loaded, models) if t.case.equal_load]


def _base_ok(model: str, rps: float, repeat: int = 1, connections: int = 16) -> dict:
    return {"trial_id": f"echo64-c{connections}-closed--{model}--r{repeat}",
            "case": f"echo64-c{connections}-closed", "model": model, "server_model": model,
            "model_args": [], "status": "ok", "derived": {"throughput_rps": rps}}


def test_the_equal_load_is_half_the_slowest_serving_model_capped_by_the_swarm() -> None:
    spec = _equal_trials()[0]
    records = {r["trial_id"]: r for r in (
        _base_ok("epoll", 30_000), _base_ok("epoll", 34_000, 2), _base_ok("iterative", 900),
        _base_ok("native", 60_000))}
    choice = choose_equal_load(spec, records)
    assert isinstance(choice, dict)
    # iterative serves one of 16 connections at a time: its 900 req/s says how it queues
    assert choice["left_out_queueing"] == ["iterative"]
    assert choice["slowest"] == {"model": "epoll", "throughput_rps": 32_000.0}  # a median
    assert choice["rate"] == 16_000.0 and not choice["capped"]
    assert choice["ceiling"]["model"] == "native" and choice["base_case"] == "echo64-c16-closed"
    # the swarm reached only 15,000 req/s with native: the rate stays under 0.8 of that
    records["echo64-c16-closed--native--r1"]["derived"]["throughput_rps"] = 15_000
    records["echo64-c16-closed--epoll--r2"]["derived"]["throughput_rps"] = 14_000
    records["echo64-c16-closed--epoll--r1"]["derived"]["throughput_rps"] = 14_000
    capped = choose_equal_load(_equal_trials(share=1.0)[0], records)
    assert isinstance(capped, dict) and capped["capped"]
    assert capped["rate"] == pytest.approx(0.8 * 15_000)


def test_no_equal_load_without_a_closed_loop_maximum() -> None:
    spec = _equal_trials()[0]
    assert "has no successful trial" in choose_equal_load(spec, {})
    only_queueing = {r["trial_id"]: r for r in (_base_ok("iterative", 900),)}
    assert "queues by design" in choose_equal_load(spec, only_queueing)


def test_an_equal_load_case_in_a_run(tmp_path: Path) -> None:
    """One rate for every model, chosen once from the base case, recorded in run.json and in
    each trial (rate_basis); the records carry their share and p50/p99/p99.9, CPU and context
    switches per request."""
    path = write_scenario(tmp_path, """
        name = "tiny"
        duration_s = 0.3
        warmup_s = 0.1
        timeout_s = 1.0
        repeat = 2
        [[group]]
        name = "echo"
        connections = [4]
        [[group]]
        name = "equal"
        connections = [4]
        mode = "open"
        equal_load = 0.5
        base = "echo64-c4-closed"
    """)
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--scenario", str(path),
                           "--servers", "epoll,threaded", "--out", str(run_dir), "--no-report"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((run_dir / "run.json").read_text())
    choice = run["equal_load"]["echo64-c4-open-equal"]
    records = load_records(run_dir)
    bases = {m: records[f"echo64-c4-closed--{m}--r1"]["derived"]["throughput_rps"]
             for m in ("epoll", "threaded")}
    assert choice["rate"] == pytest.approx(0.5 * min(bases.values()), rel=0.01)
    assert choice["slowest"]["model"] == min(bases, key=bases.get)
    equal = [r for r in records.values() if r["case"] == "echo64-c4-open-equal"]
    assert len(equal) == 4
    for record in equal:
        assert record["status"] == "ok", record["failure"]
        assert record["mode"] == "open" and record["offered_fraction"] is None
        assert record["equal_load_share"] == 0.5 and record["rate"] == choice["rate"]
        assert record["rate_basis"] == choice
        assert record["swarm"]["rate"] == pytest.approx(choice["rate"], rel=0.01)
        derived = record["derived"]
        for figure in ("p50_us", "p99_us", "p99_9_us", "cpu_us_per_request",
                       "ctx_switches_per_request"):
            assert derived[figure] is not None, figure
    assert run["timing"]["trials"] == 8 and run["timing"]["overhead_per_trial_s"] > 0
