"""Open-loop rates learnt during a run: sweep points and the equal offered load.

A sweep point offers ``offered_fraction`` of each model's own closed-loop maximum (its base
case). An equal-load case offers one absolute rate to every model, chosen once per run from
what the run measured in its base case: ``equal_load_share`` of the slowest model that serves
every connection at once (a model that queues by design, ``CLIENTS_AT_ONCE`` below the case's
connections, is left out: its maximum says how it queues), and never above ``CEILING_SHARE`` of
the highest closed-loop rate the swarm reached in that case (native's, where it runs: the swarm
demonstrably offers that much, and no more is known). Throughput must separate models that are
all faster than the client; latency at one offered load does, and so do CPU and context
switches per request at that load.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from bench.analysis import validity
from bench.store import TrialSpec

CEILING_SHARE = 0.8  # of the highest closed-loop rate the swarm reached: its open-loop ceiling


def sweep_rate(spec: TrialSpec, records: Mapping[str, dict[str, Any]]
               ) -> tuple[float, str] | str:
    """The open-loop rate for a sweep point: ``offered_fraction`` of the model's closed-loop
    maximum from the base case (same repetition, else the earliest other). Returns (rate, base
    trial id), or a failure message."""
    base, fraction = spec.case.base, spec.case.fraction
    assert base is not None and fraction is not None
    same = f"{base}--{spec.model}--r{spec.repeat}"
    candidates = [same] + sorted(k for k in records if k.startswith(f"{base}--{spec.model}--r"))
    for trial_id in candidates:
        record = records.get(trial_id)
        if record and record.get("status") == "ok":
            rps = (record.get("derived") or {}).get("throughput_rps")
            if rps:
                return round(fraction * rps, 2), trial_id
    return (f"no closed-loop maximum for {spec.model}: base case {base} has no "
            "successful trial")


def _maxima(base: str, records: Mapping[str, dict[str, Any]]
            ) -> dict[str, tuple[float, int | None, str | None]]:
    """Per model label: the median closed-loop throughput of its successful base trials, how
    many clients it serves at once by design, and its registry name."""
    rates: dict[str, list[float]] = {}
    bounds: dict[str, tuple[int | None, str | None]] = {}
    for record in records.values():
        if record.get("case") != base or record.get("status") != "ok":
            continue
        rps = (record.get("derived") or {}).get("throughput_rps")
        if not rps:
            continue
        model = str(record.get("model"))
        rates.setdefault(model, []).append(float(rps))
        bounds[model] = (validity.registry_clients_at_once(record), record.get("server_model"))
    return {m: (statistics.median(v), *bounds[m]) for m, v in rates.items()}


def choose_equal_load(spec: TrialSpec, records: Mapping[str, dict[str, Any]]
                      ) -> dict[str, Any] | str:
    """The run's one rate for an equal-load case, and how it was chosen (recorded in run.json
    and in each of its trials as ``rate_basis``); or why none can be chosen."""
    case = spec.case
    share = case.equal_load
    assert share is not None and case.base is not None
    maxima = _maxima(case.base, records)
    if not maxima:
        return f"no closed-loop maximum to choose the equal load from: {case.base} has no " \
               "successful trial"
    serving = {m: v for m, v in maxima.items() if v[1] is None or v[1] >= case.connections}
    queueing = sorted(set(maxima) - set(serving))
    if not serving:
        return f"every model with a maximum in {case.base} queues by design at " \
               f"{case.connections} connections"
    slowest = min(serving, key=lambda m: (serving[m][0], m))
    fastest = max(maxima, key=lambda m: (maxima[m][0], m))
    wanted, ceiling = share * serving[slowest][0], CEILING_SHARE * maxima[fastest][0]
    rate = round(min(wanted, ceiling), 1)
    return {
        "case": case.name, "rate": rate, "base_case": case.base, "share": share,
        "rule": (f"{share:g} x the slowest closed-loop maximum in {case.base} among models "
                 f"serving {case.connections} connections at once, at most {CEILING_SHARE:g} x "
                 "the highest one (what the swarm offered)"),
        "slowest": {"model": slowest, "throughput_rps": round(serving[slowest][0], 1)},
        "ceiling": {"model": fastest, "throughput_rps": round(maxima[fastest][0], 1),
                    "share": CEILING_SHARE},
        "capped": ceiling < wanted,
        "left_out_queueing": queueing,
        "models": len(maxima),
        "chosen_for": spec.trial_id,
    }
