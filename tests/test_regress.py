"""The regression check: statistics on synthetic samples, verdicts, exit statuses, cleanup.

No server runs here: a synthetic sampler stands in for the real one, and a tiny git repository
with a ``servers`` registry stands in for the project, so every test takes well under a second.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
from _helpers import sigint_at_default

from bench.regress import check as regress
from bench.regress import stats as rs
from bench.regress.check import Settings
from bench.regress.model import GateCase, Profile, Sample, ServerSource
from bench.regress.verdict import EXIT_PASS, EXIT_REGRESSION

ROOT = Path(__file__).resolve().parents[1]
BASE_RPS = 20_000.0


# --------------------------------------------------------------------------- statistics


def synthetic(rng: np.random.Generator, n: int, scale: float, cv: float) -> list[float]:
    return list(BASE_RPS * scale * (1.0 + cv * rng.standard_normal(n)))


@pytest.mark.parametrize("seed", range(5))
def test_equal_samples_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    result = rs.compare_throughput(synthetic(rng, 10, 1.0, 0.03), synthetic(rng, 10, 1.0, 0.03))
    assert result is not None
    assert not result.flagged and not result.faster
    assert abs(result.slowdown) < 0.05
    assert result.threshold == pytest.approx(rs.DEFAULT_THRESHOLD)


@pytest.mark.parametrize("seed", range(5))
def test_twenty_percent_slower_is_flagged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = synthetic(rng, 10, 1.0, 0.03)
    head = synthetic(rng, 10, 1 / 1.2, 0.03)
    result = rs.compare_throughput(base, head)
    assert result is not None and result.flagged
    assert result.slowdown == pytest.approx(0.2, abs=0.05)
    assert result.ci_low - 1 < result.slowdown < result.ci_high - 1
    assert result.p_value < rs.DEFAULT_ALPHA


def test_faster_is_not_a_regression() -> None:
    rng = np.random.default_rng(7)
    result = rs.compare_throughput(synthetic(rng, 10, 1.0, 0.03), synthetic(rng, 10, 1.3, 0.03))
    assert result is not None and result.faster and not result.flagged


def noisy(rng: np.random.Generator, scale: float, cv: float, hit_rate: float) -> list[float]:
    """10 samples with ``cv`` noise, a ``hit_rate`` share of them 40 % slow (a busy neighbour)."""
    values = np.asarray(synthetic(rng, 10, scale, cv))
    values[rng.random(10) < hit_rate] *= 0.6
    return list(np.clip(values, 1.0, None))


@pytest.mark.parametrize(("cv", "hit_rate"), [(0.3, 0.0), (0.1, 0.2)])
def test_noisy_equal_samples_raise_no_alarm(cv: float, hit_rate: float) -> None:
    flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        result = rs.compare_throughput(noisy(rng, 1.0, cv, hit_rate), noisy(rng, 1.0, cv, hit_rate),
                                       seed=seed)
        assert result is not None
        flagged += result.flagged
    assert flagged == 0


def test_noisy_twenty_percent_is_mostly_inconclusive() -> None:
    """20 % slower under 30 % noise: the threshold widens past 20 %, few single passes flag."""
    results = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        result = rs.compare_throughput(noisy(rng, 1.0, 0.3, 0.0), noisy(rng, 1 / 1.2, 0.3, 0.0),
                                       seed=seed)
        assert result is not None
        results.append(result)
    assert np.median([r.threshold for r in results]) > 0.2
    assert sum(r.flagged for r in results) <= 0.2 * len(results)


def test_threshold_widens_to_three_times_the_noise() -> None:
    assert rs.effective_threshold(0.15, 0.01) == 0.15
    assert rs.effective_threshold(0.15, 0.1) == pytest.approx(np.expm1(0.3))


def test_same_code_noise_tracks_the_sample_spread() -> None:
    """The split-half estimate is near the true spread of a median ratio of n against n."""
    rng = np.random.default_rng(3)
    cv, n = 0.05, 40
    estimates = [rs.same_code_noise(synthetic(rng, n, 1, cv), synthetic(rng, n, 1, cv), seed=i)
                 for i in range(20)]
    expected = 1.2533 * cv / np.sqrt(n) * np.sqrt(2)  # sd of a median ratio, normal samples
    assert np.median(estimates) == pytest.approx(expected, rel=0.35)
    assert rs.same_code_noise([1.0, 2.0], [1.0, 2.0]) == 0.0


def test_too_few_samples_say_nothing() -> None:
    assert rs.compare_costs("x", [1.0, 1.0], [2.0, 2.0, 2.0]) is None
    assert rs.compare_throughput([0.0, -1, float("nan"), 1], [1, 1, 1]) is None


def test_accept_lines() -> None:
    message = "Make epoll safer\n\nperf-accept: epoll, threaded\nPerf-Accept: poll asyncio\n"
    assert rs.parse_accepted(message) == {"epoll", "threaded", "poll", "asyncio"}
    assert rs.parse_accepted("no such line\nperf-accepted: x") == set()
    assert rs.is_accepted("select", rs.parse_accepted("perf-accept: *"))
    assert not rs.is_accepted("select", {"epoll"})


def test_schedule_is_abba() -> None:
    assert regress.schedule(3) == ["base", "head", "head", "base", "base", "head"]


# --------------------------------------------------------------------------- whole check


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


REGISTRY = """MODELS = {names!r}


def unavailable_reason(name):
    return None
"""


def commit_models(repo: Path, names: dict[str, str], message: str) -> None:
    package = repo / "servers"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(REGISTRY.format(names=names))
    git(repo, "add", "servers")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose base commit has models a, b and whose head adds c."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.invalid")
    git(path, "config", "user.name", "test")
    commit_models(path, {"a": "servers.a", "b": "servers.b"}, "base")
    return path


Slowdown = Callable[[str, str, int], float]  # (side, model, pass number) -> cost factor


class FakeSampler:
    """Synthetic samples: 3 % noise, head slower by ``slowdown(side, model, pass)``."""

    def __init__(self, slowdown: Slowdown) -> None:
        self.slowdown = slowdown
        self.rng = np.random.default_rng(11)
        self.calls: list[tuple[str, str, int]] = []
        self.passes: dict[tuple[str, str], int] = {}
        self.roots: set[Path] = set()

    def __call__(self, source: ServerSource, model: str, case: GateCase, profile: Profile,
                 index: int) -> Sample:
        key = (model, case.name)
        if index == 0 and source.side == "base" or key not in self.passes:
            self.passes[key] = self.passes.get(key, 0) + 1
        assert (source.root / "servers" / "__init__.py").exists()
        self.roots.add(source.root)
        self.calls.append((source.side, model, index))
        factor = self.slowdown(source.side, model, self.passes[key])
        rps = BASE_RPS / factor * (1 + 0.03 * self.rng.standard_normal())
        return Sample(source.side, model, case.name, index, ok=True, throughput_rps=rps,
                      cpu_us_per_request=1e6 / rps)


PROFILE = Profile("test", None, (GateCase("echo", "echo:64", 4),), samples=8, duration_s=0.1,
                  warmup_s=0.0)
# the timing stage alone, on every model: these toy repositories have no real servers to
# probe, and their A/A commits reach no model (tests/test_cost.py covers the cost stage)
TIMING_ONLY = {"stages": ("timing",), "reach": "all"}


def check(repo: Path, slowdown: Slowdown, tmp_path: Path, **options: object) -> tuple[
        regress.GateVerdict, FakeSampler]:
    sampler = FakeSampler(slowdown)
    settings = Settings(base="HEAD~1" if len(git(repo, "log", "--oneline").splitlines()) > 1
                        else "HEAD", profile=PROFILE, repo=repo,
                        json_path=tmp_path / "verdict.json", **{**TIMING_ONLY, **options})
    verdict = regress.run_check(settings, lambda: sampler, progress=lambda message: None)
    regress.write_outputs(verdict, regress.markdown(verdict))
    return verdict, sampler


def no_worktrees_left(repo: Path) -> bool:
    listing = git(repo, "worktree", "list", "--porcelain")
    return listing.count("worktree ") == 1


def test_a_a_passes_and_cleans_up(repo: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    verdict, sampler = check(repo, lambda side, model, run: 1.0, tmp_path)
    assert verdict.exit_status == EXIT_PASS, verdict.error
    assert {r.status for r in verdict.results} == {"pass"}
    assert [side for side, model, _ in sampler.calls if model == "a"] == regress.schedule(8)
    assert no_worktrees_left(repo)
    assert sampler.roots and all(root == repo or not root.exists() for root in sampler.roots)
    written = json.loads((tmp_path / "verdict.json").read_text())
    assert written["verdict"] == "pass" and written["exit_status"] == 0
    assert len(written["results"][0]["passes"][0]["samples"]) == 16
    assert "| a | echo |" in capsys.readouterr().out


def test_confirmed_regression_exits_1_and_names_the_model(repo: Path, tmp_path: Path) -> None:
    commit_models(repo, {"a": "servers.a", "b": "servers.b", "c": "servers.c"}, "head")
    verdict, sampler = check(
        repo, lambda side, model, run: 1.25 if side == "head" and model == "b" else 1.0,
        tmp_path)
    assert verdict.exit_status == EXIT_REGRESSION
    statuses = {r.model: r.status for r in verdict.results}
    assert statuses == {"a": "pass", "b": "regression", "c": "skipped"}
    assert verdict.skipped == {"c": "absent from the base revision"}
    assert sampler.passes[("b", "echo")] == 2 and sampler.passes[("a", "echo")] == 1
    table = regress.markdown(verdict)
    assert "| b | echo |" in table and "**regression**" in table
    assert no_worktrees_left(repo)


def test_accepted_slowdown_passes_and_says_so(repo: Path, tmp_path: Path) -> None:
    commit_models(repo, {"a": "servers.a", "b": "servers.b"}, "slower b\n\nperf-accept: b\n")
    verdict, _ = check(
        repo, lambda side, model, run: 1.25 if side == "head" and model == "b" else 1.0,
        tmp_path)
    assert verdict.exit_status == EXIT_PASS
    assert {r.model: r.status for r in verdict.results} == {"a": "pass", "b": "accepted"}
    assert "Accepted slowdowns (perf-accept): b" in regress.markdown(verdict)


def test_unconfirmed_flag_is_inconclusive(repo: Path, tmp_path: Path) -> None:
    verdict, _ = check(
        repo, lambda side, model, run: 1.25 if side == "head" and run == 1 else 1.0, tmp_path,
        models=["a"])
    assert verdict.exit_status == EXIT_PASS
    assert verdict.verdict == "inconclusive"
    assert [r.status for r in verdict.results] == ["unconfirmed"]


def test_failing_base_server_exits_2(repo: Path, tmp_path: Path) -> None:
    class Broken(FakeSampler):
        def __call__(self, source: ServerSource, model: str, case: GateCase, profile: Profile,
                     index: int) -> Sample:
            if source.side == "base":
                return Sample("base", model, case.name, index, ok=False, failure="no READY")
            return super().__call__(source, model, case, profile, index)

    broken = Broken(lambda side, model, run: 1.0)
    settings = Settings(base="HEAD", profile=PROFILE, repo=repo, json_path=tmp_path / "v.json",
                        **TIMING_ONLY)
    verdict = regress.run_check(settings, lambda: broken, progress=lambda message: None)
    assert verdict.exit_status == regress.EXIT_CANNOT_RUN
    assert {r.status for r in verdict.results} == {"error"}
    assert len(broken.calls) <= 4  # gave up after the first base sample failed twice
    assert "no READY" in verdict.results[0].note


def test_nonexistent_revision_exits_2(repo: Path) -> None:
    sampler = FakeSampler(lambda side, model, run: 1.0)
    settings = Settings(base="no-such-rev", profile=PROFILE, repo=repo, **TIMING_ONLY)
    verdict = regress.run_check(settings, lambda: sampler, progress=lambda message: None)
    assert verdict.exit_status == regress.EXIT_CANNOT_RUN
    assert "no such revision" in (verdict.error or "")


def test_interrupt_removes_the_worktree(repo: Path) -> None:
    roots: list[Path] = []

    def interrupted(source: ServerSource, *args: object) -> Sample:
        roots.append(source.root)
        raise KeyboardInterrupt

    settings = Settings(base="HEAD", profile=PROFILE, repo=repo, **TIMING_ONLY)
    with pytest.raises(KeyboardInterrupt):
        regress.run_check(settings, lambda: interrupted, progress=lambda message: None)
    assert no_worktrees_left(repo)
    assert roots and roots[0] != repo and not roots[0].exists()


def test_cli_nonexistent_revision_exits_2(tmp_path: Path) -> None:
    verdict_path = tmp_path / "verdict.json"
    done = subprocess.run([sys.executable, "-m", "bench", "regress", "--base", "no-such-rev-x",
                           "--json", str(verdict_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "no such revision" in done.stdout
    assert json.loads(verdict_path.read_text())["exit_status"] == 2


def test_step_summary_is_appended(repo: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    check(repo, lambda side, model, run: 1.0, tmp_path)
    text = summary.read_text()
    assert text.startswith("earlier\n") and "Performance regression check: PASS" in text


# --------------------------------------------------------------------------- trend baseline


def baseline_run(tmp_path: Path, action: str, factor: float) -> int:
    from bench.regress import baseline

    parser = baseline.argparse.ArgumentParser()
    baseline.add_arguments(parser)
    options = parser.parse_args([action, "--models", "threaded,epoll", "--samples", "6",
                                 "--dir", str(tmp_path)])
    sampler = FakeSampler(lambda side, model, run: factor if model == "epoll" else 1.0)
    return baseline.run(options, make_sampler=lambda: sampler)


def test_baseline_warns_but_never_fails(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert baseline_run(tmp_path, "compare", 1.0) == 0
    assert "No baseline for this machine yet" in capsys.readouterr().out
    assert baseline_run(tmp_path, "save", 1.0) == 0
    [saved] = list(tmp_path.glob("*.json"))
    entry = json.loads(saved.read_text())["entries"][0]
    assert len(entry["figures"]["echo64-c16"]["epoll"]["throughput_rps"]) == 6
    capsys.readouterr()
    assert baseline_run(tmp_path, "compare", 1.0) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert baseline_run(tmp_path, "compare", 1.3) == 0
    out = capsys.readouterr().out
    assert "| echo64-c16 | epoll |" in out and "WARNING: slower" in out
    assert "| echo64-c16 | threaded |" in out and out.count("WARNING: slower") == 1


def test_machine_key_is_a_safe_file_name() -> None:
    from bench.regress import baseline

    key = baseline.machine_key(baseline.fingerprint())
    assert re.fullmatch(r"[a-z0-9.-]+", key)
    assert key == baseline.machine_key(baseline.fingerprint())


# --------------------------------------------------------------------------- real servers


def base_worktrees() -> set[str]:
    """The gate's worktrees registered now (a killed run elsewhere may have left some: a
    test checks that it adds none)."""
    return {line for line in git(ROOT, "worktree", "list").splitlines()
            if "concbench-base-" in line}


@pytest.mark.slow
def test_a_a_with_real_servers_passes(tmp_path: Path) -> None:
    """Base HEAD against the working tree, real servers and swarm, minimal samples: exit 0,
    figures from both sides, and the base worktree gone afterwards."""
    verdict_path = tmp_path / "verdict.json"
    before = base_worktrees()
    done = subprocess.run([sys.executable, "-m", "bench", "regress", "--base", "HEAD", "--models",
                           "epoll", "--profile", "quick", "--samples", "3", "--duration", "0.3",
                           "--warmup", "0.1",
                           "--stages", "timing", "--json", str(verdict_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(verdict_path.read_text())
    [result] = verdict["results"]
    samples = result["passes"][0]["samples"]
    assert [s["side"] for s in samples] == regress.schedule(3)
    assert all(s["ok"] and s["throughput_rps"] > 0 and s["cpu_us_per_request"] > 0
               for s in samples)
    assert "| epoll | echo64-c16 |" in done.stdout
    assert base_worktrees() <= before


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_check_exits_2_and_leaves_nothing(signum: int) -> None:
    before = base_worktrees()
    proc = subprocess.Popen([sys.executable, "-m", "bench", "regress", "--base", "HEAD",
                             "--models", "epoll", "--profile", "quick", "--samples", "4",
                             "--duration", "0.2", "--warmup", "0.05", "--stages", "timing",
                             "--json", os.devnull],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_at_default)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first sample is done: a base server has run
        assert "[regress] epoll" in line, line
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == regress.EXIT_CANNOT_RUN
        assert "interrupted" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert base_worktrees() <= before
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
