"""The run command's steps (the verb, its options and Ctrl-C handling: run.py).

``prepare_new`` (a scenario into a new run folder) or ``prepare_resume`` (an interrupted one
reopened) gives a ``PreparedRun``; ``execute`` opens its load (``open_load``: the swarm service
on this machine, or the hosts and the swarm across them), runs its trials and ``summarise``s
them (run.json's timing and status, the lines on the terminal), returning the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import environment, procs
from bench.environment import Placement, cpu_text
from bench.run import calibration, interpreters, planning, scenario
from bench.run.context import TrialContext, default_swarm_command
from bench.run.listing import models_under
from bench.run.runner import Runner, RunResult, finish_run
from bench.run.scenario import ModelSpec, Scenario, TrialSpec
from bench.run.swarm_run import raise_fd_limit
from bench.run.swarm_service import ServiceError, SwarmService
from bench.store import FORMAT, RunStore, utc_now

EXIT_OK, EXIT_REPORT_FAILED, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130


class RunRefused(Exception):
    """The run cannot start; the message says why."""


@dataclass
class PreparedRun:
    """A run ready to start (``prepare_new``, ``prepare_resume``): its folder, with run.json
    written, its scenario, trials and placement; the hosts file when the server and the swarm
    run on other machines; the swarm command when one is given instead of the swarm service
    (the tests' hidden ``--swarm-command``)."""

    store: RunStore
    scenario: Scenario
    trials: list[TrialSpec]
    placement: Placement
    hosts_file: Path | None = None
    swarm_command: list[str] | None = None

    def headline(self) -> str:
        """One line: what runs, where, for about how long, into which folder."""
        placement = self.placement
        models = list(dict.fromkeys(t.model for t in self.trials))
        return (f"[bold]{self.scenario.name}[/bold]: {len(self.trials)} trials, "
                f"{len(models)} models ({', '.join(models)}), placement {placement.name} "
                f"(server CPUs {cpu_text(placement.server_cpus)}, swarm CPUs "
                f"{cpu_text(placement.swarm_cpus)}), about "
                f"{planning.estimate_s(self.trials) / 60:.1f} min; run folder "
                f"{self.store.run_dir}")


@dataclass
class Load:
    """What drives the trials' load, opened for the run (``open_load``): the swarm service on
    this machine, or the hosts session and the swarm across its load hosts; neither when a
    swarm command is given."""

    service: Any = None  # SwarmService or bench.hosts.swarm.HostsSwarm
    hosts: Any = None  # bench.hosts.session.HostsSession

    def attach(self, context: TrialContext) -> None:
        """The trials use this load."""
        if self.hosts is not None:
            context.hosts = context.launcher = self.hosts
        if self.service is not None:
            context.swarm_service = self.service

    @property
    def service_starts(self) -> int:
        return self.service.starts if self.service is not None else 0


def resolve_interpreters(entries: Sequence[Any]) -> tuple[list[tuple[Any, ...]],
                                                          list[dict[str, Any]], list[str]]:
    """Scenario interpreter entries -> ((path, tag, env) tuples, descriptions, notes on the
    missing ones).

    No entries: the running interpreter, untagged. Otherwise every found one is tagged, so
    model labels read ``threaded@python3.13t``; ``env`` (name, value) pairs are set for its
    servers (and its probe: what it says about its GIL is what the servers get)."""
    if not entries:
        return [(sys.executable, None, ())], [environment.this_interpreter()], []
    found: list[tuple[Any, ...]] = []
    described, notes = [], []
    for entry in entries:
        spec = entry["path"] if isinstance(entry, dict) else entry
        tag = entry.get("name") if isinstance(entry, dict) else None
        env = dict(entry.get("env") or {}) if isinstance(entry, dict) else {}
        result = interpreters.lookup(spec, env=env)
        if isinstance(result, str):
            notes.append(f"interpreter {tag or spec} skipped: {result}")
            continue
        tag = tag or Path(spec).name or spec
        if any(tag == other[1] for other in found):
            tag = f"{tag}-{len(found) + 1}"
        found.append((str(result.path), tag, tuple(sorted(env.items()))))
        described.append({**result.describe(), "tag": tag, "env": env})
    return found, described, notes


def _overrides(options: argparse.Namespace) -> dict[str, Any]:
    return {"repeat": options.repeat, "placement": options.placement,
            "duration_s": options.duration, "warmup_s": options.warmup,
            "window_scale": options.window_scale}


def prepare_new(options: argparse.Namespace, console: Console) -> PreparedRun:
    """Load the scenario, find interpreters and models, create the run folder and run.json."""
    loaded = scenario.load(options.scenario or "default", _overrides(options))
    found, described, notes = resolve_interpreters(loaded.interpreters)
    if not found:
        raise RunRefused("none of the scenario's interpreters can be used: " + "; ".join(notes))
    available: dict[str, list[str]] = {}
    for path, *_ in found:
        if path in available:
            continue
        available[path], model_notes = models_under(path)
        notes.extend(f"{path}: {note}" for note in model_notes if options.servers is None)
    only = _servers_option(options.servers, loaded)
    models, model_notes = planning.resolve_models(loaded, available, found, only)
    notes.extend(model_notes)
    notes.extend(planning.skip_notes(loaded, models))
    trials = planning.plan(loaded, models)
    if not trials:
        raise RunRefused("nothing to run: no model of the scenario is available here")
    fd_note = raise_fd_limit(max(trial.sockets for trial in trials))
    if fd_note:
        notes.append(fd_note)
    placement = (hosts_placement(options.hosts) if options.hosts else
                 environment.resolve_placement(loaded.placement, loaded.server_cores))
    if placement.note:
        notes.append(placement.note)
    run_dir = options.out or RunStore.default_dir(loaded.name)
    try:
        store = RunStore.create(run_dir)
    except FileExistsError as error:
        raise RunRefused(str(error)) from None
    spec = {**loaded.to_dict(), "models": [asdict(model) for model in models], "notes": notes}
    machine = environment.collect(placement, described)
    machine["calibration"] = calibration.measure(placement.cpus_used())
    console.print(f"machine today: {calibration.describe(machine['calibration'])}",
                  soft_wrap=True, highlight=False)
    store.write_run({
        "format": FORMAT, "run_id": store.run_id, "scenario": loaded.name, "scenario_spec": spec,
        "environment": machine, "started_at": utc_now(),
        "finished_at": None, "status": "running", "plan": [t.trial_id for t in trials],
        "resumed_at": [], "hosts_file": str(options.hosts.resolve()) if options.hosts else None,
    })
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    return PreparedRun(store, loaded, trials, placement, options.hosts, options.swarm_command)


def _servers_option(value: str | None, loaded: Scenario) -> list[str] | None:
    """--servers a,b checked against the registry and the scenario's variants."""
    if value is None:
        return None
    from servers import MODELS

    names = [name.strip() for name in value.split(",") if name.strip()]
    known = planning.known_labels(loaded, list(MODELS))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise RunRefused(f"unknown server(s) {', '.join(unknown) or repr(value)}; "
                        f"known: {', '.join(known)}")
    return names


def prepare_resume(run_dir: Path, console: Console, options_hosts: Path | None = None,
                   swarm_command: list[str] | None = None) -> PreparedRun:
    """Reopen an interrupted run: same scenario, models, placement, plan (and hosts file)."""
    try:
        store = RunStore.open(run_dir)
        run = store.read_run()
        _check_resumable_format(run, run_dir)
        spec = run["scenario_spec"]
        loaded = scenario.from_dict(spec["data"], source=spec.get("source", "<run.json>"))
        models = [ModelSpec(**{**model, "args": tuple(model["args"]), "interpreter_env": tuple(
            tuple(pair) for pair in model.get("interpreter_env", ()))}) for model in spec["models"]]
        placement_data = run["environment"]["placement"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunRefused(f"cannot resume {run_dir}: {error}") from None
    trials = planning.plan(loaded, models)
    if [t.trial_id for t in trials] != run.get("plan"):
        raise RunRefused(f"cannot resume {run_dir}: its plan does not match its scenario")
    if run.get("status") == "complete":
        console.print(f"{run_dir} is already complete; nothing to resume")
    placement = Placement(placement_data["name"], _tuple(placement_data["server_cpus"]),
                          _tuple(placement_data["swarm_cpus"]), placement_data.get("note"))
    if run.get("hosts_file") and options_hosts is None:
        options_hosts = Path(run["hosts_file"])
    if (placement.name == "hosts") != (options_hosts is not None):
        raise RunRefused(f"cannot resume {run_dir}: it ran " + (
            "across hosts: give --hosts" if placement.name == "hosts" else
            "on this machine: drop --hosts"))
    fd_note = raise_fd_limit(max((trial.sockets for trial in trials), default=0))
    if fd_note:
        console.print(f"[yellow]note:[/yellow] {fd_note}", soft_wrap=True)
    store.update_run(status="running", finished_at=None,
                     resumed_at=[*run.get("resumed_at", []), utc_now()])
    return PreparedRun(store, loaded, trials, placement, options_hosts, swarm_command)


def hosts_placement(path: Path) -> Placement:
    """The placement a hosts file gives (RunRefused when the file cannot be used)."""
    from bench.hosts.config import HostsFileError, load_hosts

    try:
        hosts = load_hosts(path)
    except HostsFileError as error:
        raise RunRefused(str(error)) from None
    loads = ", ".join(spec.name for spec in hosts.load)
    return Placement("hosts", hosts.server.cpus, None,
                     f"hosts from {path}: the server on {hosts.server.name} at {hosts.address}, "
                     f"the load from {loads}; the environment and calibration describe this "
                     "machine, the coordinator")


def _check_resumable_format(run: dict[str, Any], run_dir: Path) -> None:
    """Only a run in this concbench's record format is resumed: trials appended to an older
    run would mix two formats in one folder (its report still reads: the loader upgrades it)."""
    written = run.get("format", 0)
    if written != FORMAT:
        raise RunRefused(f"cannot resume {run_dir}: its records are in format {written!r}, and "
                         f"this concbench writes format {FORMAT} (docs/results-format.md); "
                         "`python -m bench report` still reads it, or start a new run")


def _tuple(cpus: list[int] | None) -> tuple[int, ...] | None:
    return None if cpus is None else tuple(cpus)


def execute(prepared: PreparedRun, console: Console, stop: threading.Event) -> int:
    """Open the load, run the trials, summarise: the run's exit status."""
    store = prepared.store
    console.print(prepared.headline(), soft_wrap=True)
    described = (store.read_run().get("environment") or {}).get("interpreters") or []
    context = TrialContext(placement=prepared.placement, work_dir=store.logs_dir,
                           run_id=store.run_id,
                           swarm_command=prepared.swarm_command or default_swarm_command(),
                           stop=stop, interpreters={str(entry.get("tag") or entry.get("path")):
                                                    entry for entry in described})
    procs.become_subreaper()
    started = time.monotonic()
    spent_before = float((store.read_run().get("timing") or {}).get("trials_s") or 0.0)
    try:
        with open_load(prepared, console) as load:
            load.attach(context)
            result = Runner(store, prepared.trials, context, console, kill_strays=True).run()
    except (ServiceError, RunRefused) as error:
        print(f"bench run: {error}", file=sys.stderr)
        finish_run(store, "interrupted")
        return EXIT_CANNOT_RUN
    elapsed = time.monotonic() - started
    procs.kill_all()
    return summarise(prepared, result, spent_before + elapsed, load.service_starts, console)


@contextlib.contextmanager
def open_load(prepared: PreparedRun, console: Console) -> Iterator[Load]:
    """The load the trials drive, started (the hosts opened and checked, or the swarm
    service), and closed on the way out whatever happens."""
    load = Load()
    try:
        if prepared.hosts_file:
            load.hosts, load.service = _open_hosts(prepared.hosts_file, console, prepared.store)
        elif not prepared.swarm_command:
            load.service = SwarmService(prepared.placement.swarm_cpus,
                                        prepared.store.logs_dir / "swarm-service.log",
                                        workers=prepared.placement.swarm_workers())
        if load.service is not None:
            load.service.start()
        yield load
    finally:
        if load.service is not None:
            load.service.close()
        if load.hosts is not None:
            load.hosts.close()


def summarise(prepared: PreparedRun, result: RunResult, trials_s: float, service_starts: int,
              console: Console) -> int:
    """Record where the time went and how the run ended, say it: the exit status."""
    store = prepared.store
    timing = run_timing(result.records.values(), trials_s, service_starts)
    store.update_run(timing=timing)
    finish_run(store, result.status)
    failed = [r for r in result.records.values() if r.get("status") != "ok"]
    for record in failed:
        console.print(f"[red]failed[/red] {record['trial_id']}: {record.get('failure')}",
                      soft_wrap=True, highlight=False)
    console.print(f"{len(result.records)} trials recorded ({len(prepared.trials)} planned, "
                  f"{len(failed)} failed) in {store.run_dir}: {timing['trials_s']:.0f} s of "
                  f"trials, {timing['overhead_per_trial_s']:.2f} s per trial beyond warm-up "
                  "and window", soft_wrap=True)
    if result.status == "interrupted":
        console.print(f"[yellow]interrupted: finished trials are kept; complete the run with "
                      f"python -m bench run --resume {store.run_dir}[/yellow]", soft_wrap=True)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _open_hosts(path: Path, console: Console, store: RunStore) -> tuple[Any, Any]:
    """Every host of the hosts file opened, its code and dependencies checked (RunRefused
    naming the host that cannot be used), and the swarm across the load hosts."""
    from bench.hosts.config import HostsFileError, load_hosts
    from bench.hosts.session import HostError, HostsSession
    from bench.hosts.swarm import HostsSwarm

    try:
        session = HostsSession(load_hosts(path))
    except HostsFileError as error:
        raise RunRefused(str(error)) from None
    console.print(f"opening {len(session.hosts)} hosts from {path}...", highlight=False)
    try:
        session.open()
    except HostError as error:
        raise RunRefused(f"hosts: {error}") from None
    for host in session.hosts:
        described = host.describe()
        console.print(f"  {host.spec.role} {host.spec.name}: python {described['python_version']}"
                      f" on {described['hostname']}, code {described['code']}, clock offset "
                      f"{described['clock_offset_us']:,.0f} µs (round trip "
                      f"{described['clock_rtt_us']:,.0f} µs)", highlight=False, soft_wrap=True)
    for note in session.shared_cpus():
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True, highlight=False)
    store.update_run(hosts=session.describe())
    return session, HostsSwarm(session)


def run_timing(records: Any, trials_s: float, service_starts: int) -> dict[str, Any]:
    """Where the run's trial time went: measured (warm-up, window, connection ramp) against
    everything else, per trial (run.json's ``timing``)."""
    records = [r for r in records if r.get("wall_s")]
    measured = sum(_measured_s(r) + _ramp_s(r) for r in records)
    count = max(1, len(records))
    return {"trials_s": round(trials_s, 1), "trials": len(records),
            "measured_s": round(measured, 1),
            "overhead_per_trial_s": round((trials_s - measured) / count, 3),
            "swarm_service_starts": service_starts}


def _measured_s(record: dict[str, Any]) -> float:
    """A trial's warm-up and window as they ran: where the window waited for steady state
    (clients/_steady.py), the warm-up it used and the window it got, not the case's caps."""
    swarm = record.get("swarm") or {}
    steady = swarm.get("steady") or {}
    if steady.get("checked"):
        return float(steady.get("warmup_s") or 0) + float(swarm.get("duration_s") or 0)
    return float(record.get("warmup_s") or 0) + float(record.get("duration_s") or 0)


def _ramp_s(record: dict[str, Any]) -> float:
    """The seconds a trial's swarm spent connecting at its connect rate (C10K)."""
    rate = float(record.get("connect_rate") or 0)
    sockets = int(record.get("connections") or 0) + int(record.get("idle_connections") or 0)
    return sockets / rate if rate > 0 else 0.0
