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
on its own core, the swarm on the other, warm-up excluded: bench/run/trial.py's ``run_trial``), and
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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.cost.cases import CASES as COST_CASES
from bench.cost.run import default_jobs
from bench.cost.tools import install_hint, missing_packages
from bench.launch import child_env
from bench.regress import cost_stage
from bench.regress import stats as rs
from bench.regress.cost_stage import CostMeasure
from bench.regress.git import commit_messages, git, is_dirty, resolve_revision, worktree
from bench.regress.model import (
    PROFILES,
    CannotRun,
    GateCase,
    Profile,
    Sample,
    Sampler,
    ServerSource,
)
from bench.regress.reach import reached_models
from bench.regress.sampler import TrialSampler
from bench.regress.summary import markdown, write_outputs
from bench.regress.verdict import (
    EXIT_CANNOT_RUN,
    STAGES,
    TIMING_FAIL_LIMIT,
    GateVerdict,
    ModelResult,
    Settings,
    evaluate,
    judge,
    overall,
)

ROOT = REPO_ROOT
PROBE_TIMEOUT_S = 30


def schedule(samples: int) -> list[str]:
    """A B B A A B B A ...: ``samples`` of each side, balanced against drift."""
    order: list[str] = []
    for round_index in range(samples):
        order += ["base", "head"] if round_index % 2 == 0 else ["head", "base"]
    return order


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
