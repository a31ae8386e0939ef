"""The regression gate's verdict: one pass's statistics (``evaluate``), a model's status from
its passes (``judge``, ``STATUS_NOTES``), and the whole check's outcome (``GateVerdict``,
``overall``) with the settings it ran with. No I/O: check.py measures, summary.py writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import REPO_ROOT as ROOT
from bench.cost.run import default_jobs
from bench.regress import cost_stage
from bench.regress import stats as rs
from bench.regress.cost_stage import CostResult
from bench.regress.model import GateCase, Profile, Sample

EXIT_PASS, EXIT_REGRESSION, EXIT_CANNOT_RUN = 0, 1, 2
# a timing regression fails the check only when the limit it beat was at most this wide
TIMING_FAIL_LIMIT = 0.25
STAGES = ("cost", "timing")


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
