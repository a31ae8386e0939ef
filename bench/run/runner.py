"""Runs: a scenario's plan run into a run folder.

``Runner`` runs the plan's trials (bench/run/trial.py, each one's phases and record):
interleaved repetitions, open-loop sweeps scaled to each model's measured closed-loop maximum,
one equal-load rate per case checked on the reference model first, failed trials recorded and
passed over, Ctrl-C honoured within seconds (``StopOnSignal``), ``--resume`` and a progress bar
with a line per trial (the summary is the report's); ``finish_run`` marks run.json at the end.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench import procs
from bench.analysis.frames import is_native
from bench.analysis.validity import client_lag_over_slo
from bench.environment import load_average
from bench.run.context import TrialContext, TrialInterrupted
from bench.run.planning import trial_estimate_s
from bench.run.rates import choose_equal_load, sweep_rate
from bench.run.trial import Trial, failed_record
from bench.run.workloads import add_reference
from bench.store import RunStore, TrialSpec, utc_now

REFERENCE_PROBES = 3  # equal load: probes of the reference at the chosen rate, at most...
REFERENCE_STEP = 0.7  # ...each lowering it by this factor while the client cannot carry it



@dataclass
class RunResult:
    status: str  # "complete" | "interrupted"
    records: dict[str, dict[str, Any]]
    ran: int
    skipped: int


class Runner:
    """Runs a plan into a run folder (resuming: trials whose record exists are skipped).

    Trials overlap where nothing is measured: when one trial's load has drained, the next
    trial's server is launched, and boots while this one's server is stopped and its record
    written; the next load starts once that is done (its rate may depend on that record).
    """

    def __init__(self, store: RunStore, trials: Sequence[TrialSpec], context: TrialContext,
                 console: Console | None = None, kill_strays: bool = False,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store, self.trials, self.context = store, list(trials), context
        self.console = console or Console()
        self.kill_strays = kill_strays
        self.on_record = on_record
        self.ran = 0
        self.equal_load: dict[str, dict[str, Any]] = {}

    def run(self) -> RunResult:
        records = self.store.load_trials()
        self.equal_load = dict(self._run_meta().get("equal_load") or {})
        pending = [t for t in self.trials if t.trial_id not in records]
        skipped = len(self.trials) - len(pending)
        if skipped:
            self.console.print(f"resuming: {skipped} of {len(self.trials)} trials already done")
        interrupted = False
        with self.context.placement.off_server_cpus(), self._progress(pending) as (progress, task):
            self._bar = (progress, task)
            try:
                self._run_all(pending, records)
                progress.update(task, description="done", done=f"{len(records)}")
            except TrialInterrupted:
                interrupted = True
            except KeyboardInterrupt:  # a second Ctrl-C: no more grace
                procs.kill_all()
                interrupted = True
        interrupted = interrupted or self.context.stop.is_set()
        return RunResult("interrupted" if interrupted else "complete", records, self.ran,
                         skipped)

    def _run_meta(self) -> dict[str, Any]:
        try:
            return self.store.read_run()
        except (OSError, ValueError):
            return {}

    def _run_all(self, trials: Sequence[TrialSpec], records: dict[str, dict[str, Any]]) -> None:
        """Run these trials in order, each next server booting while the last one stops."""
        current = ahead = finishing = None
        try:
            for index, spec in enumerate(trials):
                if self.context.stop.is_set():
                    raise TrialInterrupted
                current, ahead = ahead or Trial(spec, self.context).launch(), None
                if finishing is not None:
                    self._complete(finishing, records)
                    finishing = None
                self._bar[0].update(self._bar[1], description=spec.trial_id,
                                    done=f"{len(records)}/{len(self.trials)}")
                resolved = self._resolve(spec, records)
                if isinstance(resolved, str):
                    current.abandon()
                    current = None
                    self._store(failed_record(spec, self.context, resolved), spec, records)
                    continue
                current.extra, rated = resolved[1], resolved[0]
                current.measure(rated)
                finishing, current = current, None
                if index + 1 < len(trials) and not self.context.stop.is_set():
                    ahead = Trial(trials[index + 1], self.context).launch()
        except TrialInterrupted:
            for trial in (current, ahead):
                if trial is not None:
                    trial.abandon()
            if finishing is not None and finishing.interrupted:
                finishing.abandon()
            elif finishing is not None:  # measured in full: its record is kept
                self._complete(finishing, records)
            raise
        except BaseException:
            for trial in (current, ahead, finishing):
                if trial is not None:
                    trial.abandon()
            raise
        if finishing is not None:
            self._complete(finishing, records)

    def _resolve(self, spec: TrialSpec, records: Mapping[str, dict[str, Any]]
                 ) -> tuple[TrialSpec, dict[str, Any]] | str:
        """The trial with its open-loop rate filled in, and what to add to its record; or why
        it cannot run (no base to learn the rate from)."""
        case = spec.case
        if case.fraction is not None:
            found = sweep_rate(spec, records)
            if isinstance(found, str):
                return found
            rate, base_trial = found
            return spec.with_rate(rate), {
                "base_trial": base_trial,
                "base_throughput_rps": records[base_trial]["derived"]["throughput_rps"]}
        if case.equal_load is not None:
            choice = self.equal_load.get(case.name)
            if choice is None:
                choice = choose_equal_load(spec, records)
                if isinstance(choice, str):
                    return choice
                self._check_on_reference(spec, choice)
                self.equal_load[case.name] = choice  # one rate for the whole run
                self.store.update_run(equal_load=self.equal_load)
                self._bar[0].console.print(
                    f"equal load for {case.name}: {choice['rate']:,.0f} req/s "
                    f"({choice['rule']}: {choice['slowest']['model']} "
                    f"{choice['slowest']['throughput_rps']:,.0f}, ceiling "
                    f"{choice['ceiling']['model']} {choice['ceiling']['throughput_rps']:,.0f})",
                    soft_wrap=True, highlight=False)
            return spec.with_rate(float(choice["rate"])), {"rate_basis": choice}
        return spec, {}

    def _check_on_reference(self, spec: TrialSpec, choice: dict[str, Any]) -> None:
        """Whether the instrument can carry the equal load: the reference model (native) is
        offered the chosen rate first, in a probe kept out of the records; while the client's
        own lag p99 passes its share of the SLO (the bound validity.py judges every trial by),
        the rate is lowered by REFERENCE_STEP, at most REFERENCE_PROBES times. What was found
        goes into the choice (run.json's equal_load and every trial's rate_basis)."""
        reference = next((t for t in self.trials if t.case.name == spec.case.name
                          and is_native(t.model)), None)
        if reference is None:
            choice["reference_check"] = "not checked: no native model in this run"
            return
        probes = []
        for attempt in range(1, REFERENCE_PROBES + 1):
            probe = replace(reference, id_override=f"{spec.case.name}--probe{attempt}")
            trial = Trial(probe, self.context).launch()
            trial.measure(probe.with_rate(float(choice["rate"])))
            record = trial.finish()
            lag = client_lag_over_slo(record)
            probes.append({"rate": choice["rate"], "status": record.get("status"),
                           "lag_p99_us": (((record.get("swarm") or {}).get("client") or {})
                                          .get("lag_us") or {}).get("p99"),
                           "carried": record.get("status") == "ok" and lag is None})
            if probes[-1]["carried"] or record.get("status") != "ok":
                break
            choice["rate"] = round(choice["rate"] * REFERENCE_STEP, 1)
        choice["reference_check"] = probes
        self._bar[0].console.print(
            f"equal load checked on {reference.model}: " + "; ".join(
                f"{p['rate']:,.0f} req/s {'carried' if p['carried'] else 'not carried'} "
                f"(client lag p99 {p['lag_p99_us'] or 0:,.0f} µs)" for p in probes),
            soft_wrap=True, highlight=False)

    def _complete(self, trial: Trial, records: dict[str, dict[str, Any]]) -> None:
        """Stop a measured trial's server, build and store its record."""
        record = trial.finish()
        record.update(trial.extra)
        add_reference(record, trial.spec, records)  # beside its reference case's trial
        self._store(record, trial.spec, records)

    def _store(self, record: dict[str, Any], spec: TrialSpec,
               records: dict[str, dict[str, Any]]) -> None:
        if self.kill_strays:
            for stray in procs.kill_strays():
                record["notes"].append(f"killed a process left running after the trial: {stray}")
        self.store.write_trial(record)
        records[spec.trial_id] = record
        self.ran += 1
        progress, task = self._bar
        progress.console.print(format_line(record), soft_wrap=True)
        progress.advance(task, trial_estimate_s(spec))
        if self.on_record:
            self.on_record(record)

    @contextlib.contextmanager
    def _progress(self, pending: Sequence[TrialSpec]) -> Iterator[tuple[Progress, Any]]:
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[done]}"),
                            TextColumn("{task.description}"), BarColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=self.console, refresh_per_second=4, transient=False)
        total = sum(trial_estimate_s(t) for t in pending) or 1.0
        with progress:
            task = progress.add_task("starting", total=total, done="")
            yield progress, task


def format_line(record: Mapping[str, Any]) -> str:
    """One line of rich markup about a finished trial."""
    d = record.get("derived") or {}
    if record.get("status") != "ok":
        return f"[red]✗ {record['trial_id']}: {record.get('failure')}[/red]"
    flags = []
    if d.get("errors"):
        flags.append(f"[yellow]{d['errors']} errors[/yellow]")
    if d.get("client_saturated"):
        flags.append("[yellow]client saturated[/yellow]")
    return (f"[green]✓[/green] {record['trial_id']}: {_num(d.get('throughput_rps'))} rps, "
            f"p99 {_ms(d.get('p99_us'))}, server CPU {_num(d.get('server_cpu_percent'))}%, "
            f"{_num(d.get('cpu_us_per_request'), 1)} µs/req"
            + (" " + " ".join(flags) if flags else ""))


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "" if digits == 0 else "–"
    return f"{value:,.{digits}f}"


def _ms(us: Any) -> str:
    return "–" if us is None else f"{us / 1000:.2f} ms"


def finish_run(store: RunStore, status: str) -> dict[str, Any]:
    """Mark run.json complete or interrupted, with the load average after."""
    data = store.read_run()
    data["status"] = status
    data["finished_at"] = utc_now()
    data.setdefault("environment", {})["load_average_after"] = load_average()
    store.write_run(data)
    return data


class StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP set ``event`` (the current trial stops, its server too, and the
    run ends, keeping finished trials); a second signal raises KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, event: threading.Event, console: Console | None = None) -> None:
        self.event, self.console = event, console
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __enter__(self) -> StopOnSignal:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def ignore_further(self) -> None:
        """On leaving, ignore these signals instead of restoring the old handlers (the process
        is on its way out: a late Ctrl-C must not turn a clean exit into a traceback)."""
        self._previous = {sig: signal.SIG_IGN for sig in self._previous}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
