"""A loaded scenario turned into trials: its models resolved against the interpreters found,
the ordered trial plan (repetitions interleaved), the skip notes and the expected wall time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.run.scenario import Scenario
from bench.store import Case, ModelSpec, TrialSpec

# a trial's cost beyond its warm-up and window (server start to READY, the swarm's start and
# drain, the server's stop, the record), measured on the 2-core box: 1.67 s with a swarm process
# per trial (load average ~6); with the swarm service and the next server booting while the last
# one stops, 0.16 s over a whole default run (19 models, ~400 trials, load 2-5) and 0.34 s for
# the models with the heaviest imports (trio, twisted, tornado, gevent) under load 4.5: what is
# left is mostly a server's interpreter start and imports, and the last one's exit
TRIAL_OVERHEAD_S = 0.2


def resolve_models(scenario: Scenario, available: Mapping[str, Sequence[str]],
                   interpreters: Sequence[tuple[Any, ...]],
                   only: Sequence[str] | None = None) -> tuple[list[ModelSpec], list[str]]:
    """The models to run (labels, registry models, args) and notes on anything skipped.

    ``available``: per interpreter path, the registry models that can run under it;
    ``interpreters``: (path, tag) or (path, tag, env) tuples that exist, env being
    (name, value) pairs set for the server; ``only``: the --servers option, which replaces the
    scenario's list. With no list, every model available under the first interpreter is run.
    """
    notes: list[str] = []
    first = available.get(interpreters[0][0], []) if interpreters else []
    wanted = list(only or scenario.servers or first)
    specs: list[ModelSpec] = []
    for label in wanted:
        model, args = scenario.variants.get(label, (label, ()))
        args = args + scenario.model_args.get(label, ())
        for path, tag, *env in interpreters:
            if model not in available.get(path, ()):
                notes.append(f"model {label} skipped under {path}: {model} is not available")
                continue
            full = f"{label}@{tag}" if tag else label
            specs.append(ModelSpec(label=full, model=model, args=args, interpreter=path,
                                   interpreter_tag=tag,
                                   interpreter_env=tuple(env[0]) if env else ()))
    return specs, notes


def known_labels(scenario: Scenario, registry: Sequence[str]) -> list[str]:
    """Names --servers accepts: registry models and the scenario's variants."""
    return [*registry, *scenario.variants]


def plan(scenario: Scenario, models: Sequence[ModelSpec]) -> list[TrialSpec]:
    """Every trial, in run order: repetition-major, then case, then model (rotated each
    repetition so that no model always runs first); a case with ``rounds`` of its own takes
    part in that many repetitions."""
    trials = []
    rounds = max([scenario.repeat, *(case.rounds for case in scenario.cases)])
    for repeat in range(1, rounds + 1):
        shift = (repeat - 1) % len(models) if models else 0
        rotated = [*models[shift:], *models[:shift]]
        for case in scenario.cases:
            if repeat > (case.rounds or scenario.repeat):
                continue
            for spec in rotated:
                if case.servers and spec.label not in case.servers \
                        and spec.model not in case.servers:
                    continue
                if _skip_reason(case, spec) is not None:
                    continue
                trials.append(_trial(case, spec, repeat, scenario))
    return trials


def _skip_reason(case: Case, spec: ModelSpec) -> str | None:
    """Why the scenario leaves this model out of this case (its ``skip_servers``), if it does."""
    reasons = dict(case.skip_servers)
    return reasons.get(spec.label, reasons.get(spec.model))


def skip_notes(scenario: Scenario, models: Sequence[ModelSpec]) -> list[str]:
    """One note per model a case's ``skip_servers`` leaves out, with the scenario's reason."""
    notes = []
    for case in scenario.cases:
        for spec in models:
            reason = _skip_reason(case, spec)
            if reason is not None:
                notes.append(f"model {spec.label} skipped in case {case.name}: {reason}")
    return notes


def _trial(case: Case, spec: ModelSpec, repeat: int, scenario: Scenario) -> TrialSpec:
    return TrialSpec(case=case, server=spec, repeat=repeat,
                     ready_timeout_s=scenario.ready_timeout_s,
                     stop_timeout_s=scenario.stop_timeout_s)


def trial_estimate_s(trial: TrialSpec) -> float:
    """Expected wall time of one trial, for the progress bar's ETA."""
    case = trial.case
    if case.steady:  # the warm-up ends when steady (about a third of its cap, as a rule),
        # the window when min_requests are in (at a rate the plan does not know: its floor)
        return trial.ramp_s() + case.warmup_s / 3 + case.duration_s + TRIAL_OVERHEAD_S
    return trial.ramp_s() + case.warmup_s + case.duration_s + TRIAL_OVERHEAD_S


def estimate_s(trials: Sequence[TrialSpec]) -> float:
    """Expected wall time of a plan."""
    return sum(trial_estimate_s(trial) for trial in trials)
