"""The workloads' part of a trial: churn, slowloris and head-of-line blocking.

A case asks for them with scenario keys (``Case.requests_per_connection``, ``slowloris``,
``slowloris_interval_s``, ``reference``); ``swarm_options`` turns them into the swarm's
options, ``derived_figures`` reads the swarm's record for the trial's derived figures, and
``reference_trial`` / ``compare_with_reference`` set a trial beside the same model's trial of its
reference case in the same run (a head-of-line case's ECHOs against the ECHO-only case).
Every key is added only where its workload ran, so other trials' records are unchanged
(docs/results-format.md names them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.store import Case, TrialSpec


def swarm_options(case: Case) -> list[str]:
    """The swarm options of a case's workloads (none for steady connections)."""
    options = []
    if case.requests_per_connection:
        options += ["--requests-per-connection", str(case.requests_per_connection)]
    if case.slowloris:
        options += ["--slowloris", str(case.slowloris),
                    "--slowloris-interval", f"{case.slowloris_interval_s:g}"]
    return options


def derived_figures(swarm: Mapping[str, Any], cpu_rate: float | None) -> dict[str, Any]:
    """Churn: connections per second, the window's connect p99 and the server's CPU per
    connection (``cpu_rate``: server CPU seconds per second). Slowloris: the slow connections
    still held when the window ended, and their errors. Only the keys of the workloads the
    record holds."""
    figures: dict[str, Any] = {}
    churn = swarm.get("churn")
    if isinstance(churn, dict):
        completed = churn.get("connections_completed")
        duration = swarm.get("duration_s")
        figures.update(
            connections_per_s=churn.get("connections_per_s"),
            churn_connect_p99_us=(churn.get("connect_us") or {}).get("p99"),
            cpu_us_per_connection=(cpu_rate * duration / completed * 1e6
                                   if completed and duration and cpu_rate is not None
                                   else None))
    slow = swarm.get("slowloris")
    if isinstance(slow, dict):
        figures.update(slowloris_held=slow.get("alive_at_end"),
                       slowloris_errors=slow.get("errors_total"))
    return figures


def reference_trial(spec: TrialSpec, records: Mapping[str, dict[str, Any]]) -> str | None:
    """The trial of ``spec``'s reference case for the same model: the same repetition, else
    the first other successful one; None when there is none (or no reference)."""
    reference = spec.case.reference
    if reference is None:
        return None
    prefix = f"{reference}--{spec.model}--r"
    candidates = [f"{prefix}{spec.repeat}", *sorted(k for k in records if k.startswith(prefix))]
    return next((trial_id for trial_id in candidates
                 if (records.get(trial_id) or {}).get("status") == "ok"), None)


def compare_with_reference(record: Mapping[str, Any], reference: Mapping[str, Any] | None
                           ) -> dict[str, Any]:
    """This trial's p99 of the requests its reference case makes (of a mix, that kind's own:
    head-of-line blocking shows in the ECHOs' tail), the reference trial's p99, and their
    ratio."""
    theirs = ((reference or {}).get("derived") or {}).get("p99_us")
    ours = kind_p99(record, ((reference or {}).get("swarm") or {}).get("mix"))
    return {"reference_p99_us": theirs, "reference_kind_p99_us": ours,
            "p99_ratio_to_reference": round(ours / theirs, 3) if ours and theirs else None}


def add_reference(record: dict[str, Any], spec: TrialSpec,
                  records: Mapping[str, dict[str, Any]]) -> None:
    """A trial of a case with a reference: the reference's trial id (``reference_trial``) in
    the record, the comparison in its derived figures."""
    if spec.case.reference is None or not isinstance(record.get("derived"), dict):
        return
    trial_id = reference_trial(spec, records)
    record["reference_trial"] = trial_id
    record["derived"].update(compare_with_reference(
        record, records.get(trial_id) if trial_id else None))


def kind_p99(record: Mapping[str, Any], mix: str | None) -> float | None:
    """The p99 of ``record``'s requests of ``mix`` (a single kind, as the swarm spells it):
    that kind's latency in a mix of several, the whole p99 otherwise."""
    swarm = record.get("swarm") or {}
    kinds = swarm.get("latency_by_kind")
    if not kinds:
        return (record.get("derived") or {}).get("p99_us")
    wanted = (mix or "").partition("=")[0]  # one kind: its weight does not name it
    for kind in kinds:
        if kind.get("kind") == wanted:
            return (kind.get("latency_us") or {}).get("p99")
    return None
