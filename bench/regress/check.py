"""``python -m bench regress --base REV``: is the head slower than REV? Measured side by side.

Two stages, for the models the change can reach (bench/regress/reach.py: ``git diff
--name-only REV`` against the models' imports; ``--models`` or ``--reach all`` overrides):

1. **cost** (bench/regress/cost_stage.py): instructions per request under callgrind and system
   calls per request under strace, both sides, deterministic. A confirmed growth past 1 % of
   instructions, or (at one connection) of any system call's count past 0.05 per request,
   fails the check.
2. **timing** (below): time and server CPU per request with statistics. A confirmed slowdown
   fails the check only when its limit was tight enough to mean something (at most
   ``TIMING_FAIL_LIMIT``, 25 %); past that, on a noisy machine, it is reported as advisory.

REV is checked out into a temporary git worktree (removed again on success, failure or Ctrl-C).
The head's harness and swarm drive both sides; only the servers come from the base worktree
(``python -m servers MODEL`` run with cwd and PYTHONPATH = that worktree), so a change to the
measuring code cannot look like a server change. The head side runs the working tree.

Per model, fixed-duration samples alternate base and head in A B B A order (each a fresh server
on its own core, the swarm on the other, warm-up excluded: bench/run/runner.py's ``run_trial``), and
bench/regress/stats.py compares two costs: time per request (1 / throughput) and server CPU per
request. A metric is *flagged* when its median head/base ratio is slower by more than the limit
(15 %, or 3x the same-code noise measured from the run's own A/A structure when that is larger)
and a one-sided Mann-Whitney test gives p < 0.01. A flagged model is measured again; only a
second flag of the same metric confirms a regression. On a busy machine throughput follows the
neighbours' load (its limit widens and it rarely flags), while CPU per request stays steady.

A ``perf-accept: MODEL[, MODEL...]`` (or ``perf-accept: *``) line in any commit message of
base..HEAD, or ``--accept``, accepts an intended slowdown: it is reported as "accepted".

Exit status: 0 pass or inconclusive, 1 confirmed regression, 2 the check could not run (no such
revision, the base's servers cannot be imported, a model's server fails on a side) or there was
nothing to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.cost.cases import CASES as COST_CASES
from bench.cost.run import default_jobs
from bench.cost.tools import install_hint, missing_packages
from bench.launch import child_env
from bench.regress import cost_stage
from bench.regress import stats as rs
from bench.regress.cost_stage import CostMeasure, CostResult
from bench.regress.model import (
    PROFILES,
    GateCase,
    Profile,
    Sample,
    Sampler,
    ServerSource,
)
from bench.regress.reach import reached_models
from bench.regress.sampler import TrialSampler
from bench.store import RESULTS_ROOT, atomic_write_json

ROOT = REPO_ROOT
EXIT_PASS, EXIT_REGRESSION, EXIT_CANNOT_RUN = 0, 1, 2
GIT_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 30
# a timing regression fails the check only when the limit it beat was at most this wide
TIMING_FAIL_LIMIT = 0.25
STAGES = ("cost", "timing")


class CannotRun(Exception):
    """The check cannot run, or the two revisions cannot be compared (exit status 2)."""


def schedule(samples: int) -> list[str]:
    """A B B A A B B A ...: ``samples`` of each side, balanced against drift."""
    order: list[str] = []
    for round_index in range(samples):
        order += ["base", "head"] if round_index % 2 == 0 else ["head", "base"]
    return order


# --------------------------------------------------------------------------- git


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git and return its standard output; CannotRun with git's message on failure."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CannotRun(f"git {' '.join(args)}: {error}") from error
    if done.returncode != 0:
        raise CannotRun(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def resolve_revision(rev: str, cwd: Path = ROOT) -> str:
    """The full commit id of ``rev``, or CannotRun when there is no such commit."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd).strip()
    except CannotRun:
        raise CannotRun(f"no such revision: {rev!r}") from None


def commit_messages(base_sha: str, cwd: Path = ROOT) -> str:
    """The messages of base..HEAD (empty when the base is HEAD)."""
    return git("log", "--format=%B", f"{base_sha}..HEAD", cwd=cwd)


def is_dirty(cwd: Path = ROOT) -> bool:
    """Whether tracked server files differ from HEAD (the head side runs the working tree)."""
    return bool(git("status", "--porcelain", "--untracked-files=no", "--", "servers", "bench",
                    cwd=cwd).strip())


@contextlib.contextmanager
def worktree(sha: str, cwd: Path = ROOT) -> Iterator[Path]:
    """A temporary detached worktree at ``sha``, removed again whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="concbench-base-"))
    try:
        git("worktree", "add", "--detach", "--force", str(path), sha, cwd=cwd)
        yield path
    finally:
        with contextlib.suppress(CannotRun):
            git("worktree", "remove", "--force", str(path), cwd=cwd)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(CannotRun):
            git("worktree", "prune", cwd=cwd)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (main thread only) so every cleanup runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- models


PROBE = """
import json, servers
why = getattr(servers, "unavailable_reason", lambda name: None)
print(json.dumps({"file": servers.__file__, "models": {n: why(n) for n in servers.MODELS},
                  "modules": dict(servers.MODELS)}))
"""


def probe_models(root: Path) -> dict[str, str | None]:
    """Model name -> why it cannot run (None = runs), as ``root``'s registry says."""
    return probe_registry(root)["models"]


def probe_registry(root: Path) -> dict[str, Any]:
    """``root``'s registry: ``models`` (name -> why it cannot run, or None) and ``modules``
    (name -> module)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=root,
                              env=child_env(root, write_bytecode=False), capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CannotRun(f"cannot list the models of {root}: {error}") from error
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise CannotRun(f"cannot import the servers of {root}: {tail[0]}")
    answer = json.loads(done.stdout)
    if not Path(answer["file"]).resolve().is_relative_to(root.resolve()):
        raise CannotRun(f"{root}: imported servers from {answer['file']}, not from the tree")
    return answer


@dataclass
class Plan:
    """The models to compare and the ones skipped, with why."""

    models: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def plan_models(requested: Sequence[str] | None, base: dict[str, str | None],
                head: dict[str, str | None]) -> Plan:
    """Intersect the request with what both sides have and can run here."""
    wanted = list(requested) if requested else list(head)
    plan = Plan(models=[])
    for model in wanted:
        if model not in head:
            raise CannotRun(f"unknown model {model!r}; the head has: {', '.join(head)}")
        if head[model] is not None:
            plan.skipped[model] = f"not available here: {head[model]}"
        elif model not in base:
            plan.skipped[model] = "absent from the base revision"
        elif base[model] is not None:
            plan.skipped[model] = f"base cannot run it here: {base[model]}"
        else:
            plan.models.append(model)
    return plan


# --------------------------------------------------------------------------- measuring


Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"[regress] {message}", file=sys.stderr, flush=True)


def measure_pass(sampler: Sampler, sources: dict[str, ServerSource], model: str, case: GateCase,
                 profile: Profile, progress: Progress) -> list[Sample]:
    """One pass: the A B B A schedule for one model and case, each failed sample retried once.

    Gives up early (returning what it has) when a side's first two attempts both fail.
    """
    samples: list[Sample] = []
    order = schedule(profile.samples)
    for index, side in enumerate(order):
        sample = sampler(sources[side], model, case, profile, index)
        if not sample.ok:
            progress(f"{model} {case.name} {side} sample failed ({sample.failure}); retrying")
            sample = sampler(sources[side], model, case, profile, index)
        samples.append(sample)
        progress(f"{model} {case.name} {index + 1}/{len(order)} {side}: " + describe(sample))
        attempts = [s for s in samples if s.side == side]
        if len(attempts) == 1 and not sample.ok:
            break
    return samples


def describe(sample: Sample) -> str:
    if not sample.ok:
        return f"FAILED: {sample.failure}"
    cpu = sample.cpu_us_per_request
    cpu_text = f", {cpu:.1f} us CPU/req" if cpu is not None else ""
    return f"{sample.throughput_rps or 0:,.0f} req/s{cpu_text}"


@dataclass
class PassResult:
    """The statistics of one pass."""

    samples: list[Sample]
    time_per_request: rs.MetricComparison | None
    cpu_per_request: rs.MetricComparison | None

    @property
    def flagged_metrics(self) -> set[str]:
        return {m.metric for m in self.metrics if m.flagged}

    @property
    def faster(self) -> bool:
        return any(m.faster for m in self.metrics) and not self.flagged_metrics

    @property
    def metrics(self) -> list[rs.MetricComparison]:
        return [m for m in (self.time_per_request, self.cpu_per_request) if m is not None]

    def as_dict(self) -> dict[str, object]:
        return {"time_per_request": self.time_per_request and self.time_per_request.as_dict(),
                "cpu_per_request": self.cpu_per_request and self.cpu_per_request.as_dict(),
                "samples": [asdict(sample) for sample in self.samples]}


def evaluate(samples: list[Sample], threshold: float, alpha: float, seed: int = 0) -> PassResult:
    """Compare base and head samples of one pass."""

    def values(side: str, attribute: str) -> list[float]:
        return [getattr(s, attribute) for s in samples
                if s.side == side and s.ok and getattr(s, attribute) is not None]

    time_cmp = rs.compare_throughput(values("base", "throughput_rps"),
                                     values("head", "throughput_rps"),
                                     threshold=threshold, alpha=alpha, seed=seed)
    cpu_cmp = rs.compare_costs("cpu_per_request", values("base", "cpu_us_per_request"),
                               values("head", "cpu_us_per_request"),
                               threshold=threshold, alpha=alpha, seed=seed)
    return PassResult(samples, time_cmp, cpu_cmp)


METRIC_LABELS = {"time_per_request": "time per request",
                 "cpu_per_request": "server CPU per request"}

# statuses, and what each means for the exit status
STATUS_NOTES = {
    "pass": "no slowdown beyond the threshold",
    "faster": "faster beyond the threshold (significant)",
    "unconfirmed": "flagged once, not confirmed by the rerun: inconclusive",
    "regression": "slower, significant, confirmed by a rerun",
    "accepted": "slower, significant, confirmed, and accepted by a perf-accept line",
    "advisory": "slower, significant, confirmed, but past a limit too wide to fail a build",
    "not gated": "measured and shown, but its counts follow the clock",
    "inconclusive": "too few good samples to say",
    "skipped": "not compared",
    "error": "the check could not run for this model",
}


@dataclass
class ModelResult:
    """The verdict for one model and case."""

    model: str
    case: str
    status: str
    note: str = ""
    passes: list[PassResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "case": self.case, "status": self.status, "note": self.note,
                "passes": [p.as_dict() for p in self.passes]}


def failure_note(samples: list[Sample]) -> str:
    failures = [f"{s.side}: {s.failure}" for s in samples if not s.ok]
    return "; ".join(dict.fromkeys(failures))[:500]


def judge(model: str, case: GateCase, passes: list[PassResult], accepted: set[str],
          fail_limit: float = TIMING_FAIL_LIMIT) -> ModelResult:
    """Turn one or two passes into a status (see STATUS_NOTES). A confirmed slowdown whose
    limit was wider than ``fail_limit`` in either pass is advisory: on a machine that noisy
    the timing stage could not have caught anything smaller, so it does not fail a build."""
    first = passes[0]
    if not first.metrics:
        bad_sides = {s.side for s in first.samples if not s.ok}
        status = "error" if bad_sides else "inconclusive"
        return ModelResult(model, case.name, status, failure_note(first.samples), passes)
    if not first.flagged_metrics:
        status = "faster" if first.faster else "pass"
        return ModelResult(model, case.name, status, "", passes)
    confirmed = first.flagged_metrics & (passes[1].flagged_metrics if len(passes) > 1 else set())
    if not confirmed:
        return ModelResult(model, case.name, "unconfirmed", STATUS_NOTES["unconfirmed"], passes)
    what = " and ".join(METRIC_LABELS.get(m, m) for m in sorted(confirmed, reverse=True))
    if rs.is_accepted(model, accepted):
        return ModelResult(model, case.name, "accepted", f"accepted slowdown ({what})", passes)
    limit = max(m.threshold for one in passes for m in one.metrics if m.metric in confirmed)
    if limit > fail_limit:
        return ModelResult(model, case.name, "advisory",
                           f"slowdown in {what}, but its limit {limit:.0%} is past "
                           f"{fail_limit:.0%}: advisory", passes)
    return ModelResult(model, case.name, "regression", f"confirmed slowdown in {what}", passes)


def check_model(sampler: Sampler, sources: dict[str, ServerSource], model: str, case: GateCase,
                profile: Profile, settings: Settings, progress: Progress) -> ModelResult:
    """First pass, then a rerun when flagged, then the verdict."""
    first = evaluate(measure_pass(sampler, sources, model, case, profile, progress),
                     settings.threshold, settings.alpha, seed=0)
    passes = [first]
    if first.flagged_metrics:
        progress(f"{model} {case.name}: flagged ({', '.join(sorted(first.flagged_metrics))}); "
                 "rerunning to confirm")
        passes.append(evaluate(measure_pass(sampler, sources, model, case, profile, progress),
                               settings.threshold, settings.alpha, seed=1))
    return judge(model, case, passes, settings.accepted, settings.timing_fail_limit)


# --------------------------------------------------------------------------- the check


@dataclass
class Settings:
    """Everything a check needs besides the sampler."""

    base: str
    profile: Profile
    models: list[str] | None = None
    threshold: float = rs.DEFAULT_THRESHOLD
    alpha: float = rs.DEFAULT_ALPHA
    accepted: set[str] = field(default_factory=set)
    json_path: Path | None = None
    repo: Path = ROOT
    stages: tuple[str, ...] = STAGES
    reach: str = "changed"  # "changed": the models the diff reaches; "all": every model
    cost_cases: tuple[str, ...] = cost_stage.GATE_CASES
    cost_threshold_pct: float = cost_stage.DEFAULT_THRESHOLD_PCT
    timing_fail_limit: float = TIMING_FAIL_LIMIT
    jobs: int = field(default_factory=default_jobs)


@dataclass
class GateVerdict:
    """The whole check's outcome."""

    settings: Settings
    exit_status: int
    verdict: str
    base_sha: str | None = None
    head_sha: str | None = None
    head_dirty: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    results: list[ModelResult] = field(default_factory=list)
    cost_results: list[CostResult] = field(default_factory=list)
    reached: dict[str, str] = field(default_factory=dict)  # model -> a changed file it runs
    changed_files: list[str] = field(default_factory=list)
    stage_wall_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        profile = asdict(self.settings.profile)
        return {
            "verdict": self.verdict, "exit_status": self.exit_status, "error": self.error,
            "base": {"rev": self.settings.base, "sha": self.base_sha},
            "head": {"sha": self.head_sha, "dirty": self.head_dirty},
            "profile": profile, "threshold": self.settings.threshold,
            "alpha": self.settings.alpha, "noise_factor": rs.NOISE_FACTOR,
            "accepted": sorted(self.settings.accepted), "skipped": self.skipped,
            "reach": {"mode": self.settings.reach, "changed_files": self.changed_files,
                      "models": self.reached},
            "cost": {"cases": list(self.settings.cost_cases),
                     "instructions_threshold_pct": self.settings.cost_threshold_pct,
                     "syscall_tolerance_per_request": cost_stage.SYSCALL_TOLERANCE,
                     "results": [r.as_dict() for r in self.cost_results]},
            "timing_fail_limit": self.settings.timing_fail_limit,
            "results": [r.as_dict() for r in self.results], "stage_wall_s": self.stage_wall_s,
            "wall_s": self.wall_s,
        }


def overall(results: Sequence[ModelResult | CostResult], *, reached_none: bool = False
            ) -> tuple[int, str]:
    """(exit status, verdict word) from the per-model results of both stages."""
    statuses = {r.status for r in results}
    if "regression" in statuses:
        return EXIT_REGRESSION, "regression"
    if "error" in statuses:
        return EXIT_CANNOT_RUN, "error"
    if not statuses - {"skipped"}:
        if reached_none:
            return EXIT_PASS, "pass (the change reaches no model)"
        return EXIT_CANNOT_RUN, "nothing compared"
    if statuses & {"unconfirmed", "inconclusive", "advisory"}:
        return EXIT_PASS, "inconclusive"
    return EXIT_PASS, "pass"


SamplerFactory = Callable[[], Sampler]


def default_sampler() -> Sampler:
    """The real sampler: a fresh server per sample, the head's swarm, split CPU placement."""
    return TrialSampler()


def run_check(settings: Settings, make_sampler: SamplerFactory,
              progress: Progress = stderr_progress,
              measure_cost: CostMeasure = cost_stage.measure_sides) -> GateVerdict:
    """Set up the base worktree, measure every model and case, and judge."""
    started = time.monotonic()
    verdict = GateVerdict(settings, EXIT_CANNOT_RUN, "error")
    try:
        with sigterm_as_interrupt():
            verdict.base_sha = resolve_revision(settings.base, settings.repo)
            verdict.head_sha = resolve_revision("HEAD", settings.repo)
            verdict.head_dirty = is_dirty(settings.repo)
            settings.accepted |= rs.parse_accepted(commit_messages(verdict.base_sha,
                                                                   settings.repo))
            with worktree(verdict.base_sha, settings.repo) as base_root:
                measure_all(settings, verdict, base_root, make_sampler, progress, measure_cost)
    except CannotRun as error:
        verdict.error = str(error)
        verdict.exit_status, verdict.verdict = EXIT_CANNOT_RUN, "error"
    verdict.wall_s = round(time.monotonic() - started, 1)
    return verdict


def changed_files(base_sha: str, repo: Path) -> list[str]:
    """Files that differ between the base commit and the working tree (what the head runs)."""
    return [line for line in git("diff", "--name-only", base_sha, cwd=repo).splitlines() if line]


def reach(settings: Settings, verdict: GateVerdict, base_root: Path, base: dict[str, Any],
          head: dict[str, Any]) -> list[str] | None:
    """The models the change reaches, in the head's order (None: every model is wanted)."""
    if settings.models or settings.reach == "all":
        return None
    verdict.changed_files = changed_files(verdict.base_sha or "HEAD", settings.repo)
    found = reached_models(verdict.changed_files, base["modules"], base_root)
    found.update(reached_models(verdict.changed_files, head["modules"], settings.repo))
    verdict.reached = {m: found[m] for m in head["modules"] if m in found}
    return list(verdict.reached)


def stage_models(requested: Sequence[str] | None, reached: list[str] | None) -> list[str] | None:
    """A stage's wish list: the request (None = every model) cut down to the reached models;
    [] when nothing is left to measure."""
    if reached is None:
        return list(requested) if requested else None
    return [m for m in (requested or reached) if m in reached]


def run_cost(settings: Settings, verdict: GateVerdict, models: list[str], roots: dict[str, Path],
             progress: Progress, measure_cost: CostMeasure) -> None:
    """Stage 1: instructions and system calls per request, into ``verdict.cost_results``."""
    if measure_cost is cost_stage.measure_sides and (missing := missing_packages()):
        raise CannotRun(install_hint(missing))
    started = time.monotonic()
    progress(f"cost: {', '.join(models)} x {', '.join(settings.cost_cases)}, base and head")
    with head_mirror(roots["head"]) as head:
        verdict.cost_results = cost_stage.run_stage(
            models, {**roots, "head": head}, cases=settings.cost_cases,
            threshold_pct=settings.cost_threshold_pct, accepted=settings.accepted,
            jobs=settings.jobs, progress=progress, measure=measure_cost)
    verdict.stage_wall_s["cost"] = round(time.monotonic() - started, 1)


MIRRORED = ("servers", "protocol")  # all a launched server imports from the tree


@contextlib.contextmanager
def head_mirror(root: Path) -> Iterator[Path]:
    """The head's servers and protocol copied to a temporary folder whose path is as long as
    the base worktree's. Some models' instruction counts follow the folder they run from
    (twisted: 97,056 per request from a 7-character path, 98,129 from a 28-character one;
    iterative 20,472 from a clone, 20,503 from a worktree); alike folders cancel most of it."""
    path = Path(tempfile.mkdtemp(prefix="concbench-head-"))  # as long as concbench-base-
    try:
        for package in MIRRORED:
            if (root / package).is_dir():
                shutil.copytree(root / package, path / package,
                                ignore=shutil.ignore_patterns("__pycache__"))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_timing(settings: Settings, verdict: GateVerdict, models: list[str],
               sources: dict[str, ServerSource], make_sampler: SamplerFactory,
               progress: Progress) -> None:
    """Stage 2: time and CPU per request, A B B A, into ``verdict.results``."""
    started = time.monotonic()
    sampler = make_sampler()
    try:
        for case in settings.profile.cases:
            for model in models:
                verdict.results.append(check_model(sampler, sources, model, case,
                                                   settings.profile, settings, progress))
    finally:
        close = getattr(sampler, "close", None)
        if close is not None:
            close()
    verdict.stage_wall_s["timing"] = round(time.monotonic() - started, 1)


def measure_all(settings: Settings, verdict: GateVerdict, base_root: Path,
                make_sampler: SamplerFactory, progress: Progress,
                measure_cost: CostMeasure = cost_stage.measure_sides) -> None:
    """Both stages, for the models the change reaches, into ``verdict``."""
    base, head = probe_registry(base_root), probe_registry(settings.repo)
    reached = reach(settings, verdict, base_root, base, head)
    if reached is not None:
        progress("the change reaches: " + (", ".join(reached) or "no model"))
    sources = {"base": ServerSource("base", base_root, verdict.base_sha or ""),
               "head": ServerSource("head", settings.repo, "working tree")}
    wishes = {"cost": stage_models(settings.models, reached),
              "timing": stage_models(settings.models or settings.profile.models, reached)}
    for stage in (s for s in STAGES if s in settings.stages):
        if wishes[stage] == []:
            continue
        plan = plan_models(wishes[stage], base["models"], head["models"])
        verdict.skipped.update(plan.skipped)
        if not plan.models:
            continue
        if stage == "cost":
            roots = {"base": base_root, "head": settings.repo}
            run_cost(settings, verdict, plan.models, roots, progress, measure_cost)
        else:
            run_timing(settings, verdict, plan.models, sources, make_sampler, progress)
    for model, why in verdict.skipped.items():
        progress(f"{model}: skipped ({why})")
    verdict.results += [ModelResult(m, "-", "skipped", why) for m, why in verdict.skipped.items()]
    verdict.exit_status, verdict.verdict = overall([*verdict.cost_results, *verdict.results],
                                                   reached_none=reached == [])


# --------------------------------------------------------------------------- output


def _metric_cell(metric: rs.MetricComparison | None) -> str:
    """``+25.1% [+20.3%, +31.0%] p=0.001 (limit 15%)``, bold when flagged."""
    if metric is None:
        return "n/a"
    change = f"**{metric.slowdown:+.1%}**" if metric.flagged else f"{metric.slowdown:+.1%}"
    return (f"{change} [{metric.ci_low - 1:+.1%}, {metric.ci_high - 1:+.1%}] "
            f"p={metric.p_value:.2g} (limit {metric.threshold:.0%})")


def markdown(verdict: GateVerdict) -> str:
    """The verdict as a Markdown section (for stdout and $GITHUB_STEP_SUMMARY)."""
    s = verdict.settings
    dirty = ", with uncommitted changes" if verdict.head_dirty else ""
    lines = [f"### Performance regression check: {verdict.verdict.upper()}", "",
             f"base `{s.base}` ({(verdict.base_sha or '?')[:10]}) vs head "
             f"({(verdict.head_sha or '?')[:10]}{dirty}).", ""]
    if verdict.error:
        lines += [f"**The check could not run:** {verdict.error}", ""]
    lines += _reach_lines(verdict)
    if verdict.cost_results:
        lines += _cost_lines(verdict)
    if verdict.results:
        lines += [f"**Timing** (profile `{s.profile.name}`: {s.profile.samples} samples per "
                  f"side of {s.profile.duration_s:g} s (+{s.profile.warmup_s:g} s warm-up), "
                  f"A B B A). A regression is a slowdown past the limit ({s.threshold:.0%}, or "
                  f"3x the same-code noise), with p < {s.alpha:g}, in two passes; it fails the "
                  f"check only if that limit is at most {s.timing_fail_limit:.0%}.", ""]
        lines += ["| model | case | base req/s | head req/s | time per request: change "
                  "[95% CI] | server CPU per request: change [95% CI] | verdict |",
                  "|---|---|---:|---:|---|---|---|"]
        for result in verdict.results:
            lines += _rows(result)
        lines.append("")
    if s.accepted:
        lines.append(f"Accepted slowdowns (perf-accept): {', '.join(sorted(s.accepted))}.")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in verdict.stage_wall_s.items())
    lines.append(f"Wall time {verdict.wall_s:.0f} s ({stages or 'no stage ran'}); "
                 f"exit status {verdict.exit_status}.")
    return "\n".join(lines) + "\n"


def _reach_lines(verdict: GateVerdict) -> list[str]:
    if verdict.settings.models or verdict.settings.reach == "all":
        return []
    if not verdict.reached:
        return [f"The change ({len(verdict.changed_files)} files) reaches no model's code.", ""]
    reached = ", ".join(f"{m} (`{f}`)" for m, f in verdict.reached.items())
    return [f"The change reaches: {reached}.", ""]


def _number(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def _cost_cells(pair: dict[str, float | None], digits: int) -> str:
    change = pair.get("change_pct")
    text = f"{_number(pair.get('base'), digits)} → {_number(pair.get('head'), digits)}"
    return text + (f" ({change:+.2f}%)" if change is not None else "")


def _cost_lines(verdict: GateVerdict) -> list[str]:
    s = verdict.settings
    lines = [f"**Cost** (deterministic: callgrind and strace, one request in flight; cases "
             f"{', '.join(s.cost_cases)}). A regression is instructions per request up by more "
             f"than {s.cost_threshold_pct:g} %, or (at one connection) any system call up by "
             f"more than {cost_stage.SYSCALL_TOLERANCE:g} per request, in two runs.", "",
             "| model | case | instructions per request | system calls per request | "
             "verdict |", "|---|---|---:|---:|---|"]
    for r in verdict.cost_results:
        status = f"**{r.status}**" + (f": {r.note}" if r.note else "")
        if not r.instructions_per_request:
            lines.append(f"| {r.model} | {r.case} | | | {status} |")
            continue
        lines.append(f"| {r.model} | {r.case} | {_cost_cells(r.instructions_per_request, 0)} | "
                     f"{_cost_cells(r.syscalls_per_request, 2)} | {status} |")
    return [*lines, ""]


def _rows(result: ModelResult) -> list[str]:
    """One table row per pass; the verdict on the last."""
    verdict = f"**{result.status}**" + (f": {result.note}" if result.note else "")
    measured = [p for p in result.passes if p.metrics]
    if not measured:
        return [f"| {result.model} | {result.case} | | | | | {verdict} |"]
    rows = []
    for number, one in enumerate(measured):
        rate = one.time_per_request
        base_rps = f"{1.0 / rate.base_median:,.0f}" if rate else ""
        head_rps = f"{1.0 / rate.head_median:,.0f}" if rate else ""
        name = result.model if number == 0 else f"{result.model} (rerun)"
        last = number == len(measured) - 1
        rows.append(f"| {name} | {result.case} | {base_rps} | {head_rps} | "
                    f"{_metric_cell(rate)} | {_metric_cell(one.cpu_per_request)} | "
                    f"{verdict if last else 'flagged: rerun'} |")
    return rows


def write_outputs(verdict: GateVerdict, text: str) -> Path:
    """Print the table, append it to $GITHUB_STEP_SUMMARY, write the JSON verdict."""
    sys.stdout.write(text)
    sys.stdout.flush()
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    path = verdict.settings.json_path or default_json_path()
    atomic_write_json(path, verdict.as_dict(), indent=2)
    return path


def default_json_path() -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return RESULTS_ROOT / "regress" / f"{stamp}.json"


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``regress`` subcommand's options."""
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--models", help="comma-separated models (default: the profile's)")
    parser.add_argument("--samples", type=int, help="samples per side and pass")
    parser.add_argument("--duration", type=float, help="measured seconds per sample")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per sample (excluded)")
    parser.add_argument("--threshold", type=float, default=rs.DEFAULT_THRESHOLD,
                        help="slowdown that counts, as a fraction (default 0.15)")
    parser.add_argument("--alpha", type=float, default=rs.DEFAULT_ALPHA,
                        help="significance level of the Mann-Whitney test (default 0.01)")
    parser.add_argument("--accept", default="",
                        help="models whose slowdown is intended (as a perf-accept: line)")
    parser.add_argument("--json", type=Path, help="verdict file (default results/regress/)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="cost, timing or both (default both)")
    parser.add_argument("--reach", choices=("changed", "all"), default="changed",
                        help="the models the diff reaches (default), or all of them")
    parser.add_argument("--cost-cases", default=",".join(cost_stage.GATE_CASES),
                        help=f"the cost stage's cases (default {','.join(cost_stage.GATE_CASES)})")
    parser.add_argument("--cost-threshold", type=float, default=cost_stage.DEFAULT_THRESHOLD_PCT,
                        help="instructions per request growth that counts, in %% (default 1)")
    parser.add_argument("--timing-fail-limit", type=float, default=TIMING_FAIL_LIMIT,
                        help="widest timing limit that may fail the check (default 0.25)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="cost runs at a time (default: twice the CPUs we may use)")


def settings_from(options: argparse.Namespace) -> Settings:
    profile = PROFILES[options.profile]
    if options.samples:
        profile = replace(profile, samples=options.samples)
    if options.duration:
        profile = replace(profile, duration_s=options.duration)
    if options.warmup is not None:
        profile = replace(profile, warmup_s=options.warmup)
    models = [m for m in options.models.split(",") if m] if options.models else None
    return Settings(base=options.base, profile=profile, models=models,
                    threshold=options.threshold, alpha=options.alpha,
                    accepted=rs.parse_accepted(f"perf-accept: {options.accept}"),
                    json_path=options.json,
                    stages=tuple(x for x in options.stages.split(",") if x),
                    reach=options.reach,
                    cost_cases=tuple(x for x in options.cost_cases.split(",") if x),
                    cost_threshold_pct=options.cost_threshold,
                    timing_fail_limit=options.timing_fail_limit, jobs=options.jobs)


def run(options: argparse.Namespace, make_sampler: SamplerFactory | None = None) -> int:
    """Run the check from parsed options; returns the exit status."""
    if options.samples is not None and options.samples < rs.MIN_SAMPLES:
        print(f"--samples must be at least {rs.MIN_SAMPLES}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if bad := [x for x in options.stages.split(",") if x and x not in STAGES]:
        print(f"unknown stage {bad[0]!r}; choose among {', '.join(STAGES)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if bad := [x for x in options.cost_cases.split(",") if x and x not in COST_CASES]:
        print(f"unknown cost case {bad[0]!r}; known: {', '.join(COST_CASES)}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        verdict = run_check(settings_from(options), make_sampler or default_sampler)
    except KeyboardInterrupt:
        print("regress: interrupted; the check did not finish", file=sys.stderr)
        return EXIT_CANNOT_RUN
    path = write_outputs(verdict, markdown(verdict))
    print(f"verdict written to {path}", file=sys.stderr)
    return verdict.exit_status
