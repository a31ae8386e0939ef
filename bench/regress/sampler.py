"""The regression check's real sampler: one runner trial per sample (bench/run/trial.py).

Each sample is a fresh server (``python -m servers MODEL`` with cwd and PYTHONPATH = the side's
tree) on the server CPU of the runner's ``split`` placement, loaded by the head's swarm on the
other CPUs for a fixed duration after a warm-up; the trial record's derived throughput and
server CPU per request (over the swarm's measured window) become the sample.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import servers
from bench.environment import Placement, resolve_placement
from bench.regress.model import GateCase, Profile, Sample, ServerSource
from bench.run.context import TrialContext
from bench.run.trial import run_trial
from bench.store import Case, ModelSpec, TrialSpec

SWARM_TIMEOUT_S = 5.0


def trial_spec(model: str, case: GateCase, profile: Profile, index: int, side: str,
               placement: Placement) -> TrialSpec:
    """The runner's description of one sample."""
    # past the clients a model serves at once, connections would only queue (and time out)
    connections = min(case.connections, servers.clients_at_once(model) or case.connections)
    point = Case(name=case.name, group="regress", mix=case.mix, payload_bytes=None,
                 connections=connections, mode="closed", pipeline=1, rate=None, fraction=None,
                 base=None, duration_s=profile.duration_s, warmup_s=profile.warmup_s,
                 timeout_s=SWARM_TIMEOUT_S, workers=profile.workers, slo_p99_ms=0.0)
    return TrialSpec(case=point, server=ModelSpec(model, model, (), sys.executable),
                     repeat=index, id_override=f"{case.name}--{model}--{side}--s{index}")


def sample_from(record: dict[str, Any], source: ServerSource, model: str, case: GateCase,
                index: int) -> Sample:
    """A trial record reduced to the figures the check compares."""
    derived = record.get("derived") or {}
    ok = record.get("status") == "ok" and bool(derived.get("throughput_rps"))
    failure = record.get("failure")
    if record.get("status") == "ok" and not ok:
        failure = "no throughput in the measured window"
    if failure and record.get("stderr_tail"):
        failure += f" (server stderr: {record['stderr_tail'].strip()[-200:]})"
    return Sample(side=source.side, model=model, case=case.name, index=index, ok=ok,
                  throughput_rps=derived.get("throughput_rps"),
                  cpu_us_per_request=derived.get("cpu_us_per_request"),
                  client_saturated=bool(derived.get("client_saturated")), failure=failure,
                  wall_s=float(record.get("wall_s") or 0.0))


class TrialSampler:
    """Runs each sample as a runner trial under the split placement; logs in a temp folder."""

    def __init__(self, placement: str = "split") -> None:
        self.placement = resolve_placement(placement)
        self.work_dir = Path(tempfile.mkdtemp(prefix="concbench-regress-"))

    def __call__(self, source: ServerSource, model: str, case: GateCase, profile: Profile,
                 index: int) -> Sample:
        context = TrialContext(placement=self.placement, work_dir=self.work_dir,
                               run_id="regress", server_root=source.root)
        spec = trial_spec(model, case, profile, index, source.side, self.placement)
        with self.placement.off_server_cpus():
            record = run_trial(spec, context)
        for log in self.work_dir.glob(f"{spec.trial_id}.*"):
            log.unlink(missing_ok=True)
        return sample_from(record, source, model, case, index)

    def close(self) -> None:
        """Remove the log folder."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
