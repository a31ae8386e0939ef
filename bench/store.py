"""The run folder and its versioned records (docs/results-format.md).

What a trial is: a ``Case`` (the scenario point) run against a ``ModelSpec`` (a server under an
interpreter) at one repetition, a ``TrialSpec``, whose ``as_record()`` is the identity part of
its trial record. How records are written: run.json and ``trials/<trial_id>.json``, atomically,
each stamped with ``FORMAT``. How they are read back: ``load_run_folder`` (one loader for the
report and the runner), which upgrades older formats explicitly instead of guessing shapes.

The spec lives here rather than in ``bench/run`` because both the run stage, which writes
records, and the analysis, which reads them, need its field list, and the analysis must not
import the run stage (no stage imports a later one; run imports report).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol.launch import atomic_write_json

__all__ = [
    "FORMAT", "RESULTS_ROOT", "Case", "ModelSpec", "RecordError", "RunFolder", "RunStore",
    "TrialSpec", "UnreadableRecord", "atomic_write_json", "load_run_folder", "read_json",
    "read_trial", "record_keys", "upgrade_run", "upgrade_trial", "utc_now",
]

# runs land in ./results of the folder the command runs in (the checkout, for make bench), never
# beside the code: an installed concbench lives in site-packages
RESULTS_ROOT = Path.cwd() / "results"
FORMAT = 1  # of run.json and trial records; the history is in docs/results-format.md
RECORD_KEY = "record_key"  # dataclass field metadata: its trial record key (None: not recorded)
RECORD_AS = "record_as"  # dataclass field metadata: how its value is written (default: lists)


def utc_now() -> str:
    """An ISO 8601 UTC timestamp, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


# ---------------------------------------------------------------- what a trial is


def _unrecorded(default: Any = ()) -> Any:
    """A field that shapes the plan but is not part of the trial record."""
    return field(default=default, metadata={RECORD_KEY: None})


@dataclass(frozen=True)
class Case:
    """One point of the scenario: a workload at a concurrency, run against every model.

    Every field is a trial record key (under its own name, or the one its metadata gives)
    unless marked unrecorded: add a field here, fill it in the scenario expander, and it is in
    every record and in the analysis's columns.
    """

    name: str = field(metadata={RECORD_KEY: "case"})
    group: str
    mix: str
    payload_bytes: int | None
    connections: int
    mode: str
    pipeline: int
    rate: float | None  # open loop: requests/s (for a sweep point, filled in during the run)
    fraction: float | None = field(metadata={RECORD_KEY: "offered_fraction"})
    base: str | None = field(metadata={RECORD_KEY: "base_case"})
    duration_s: float
    warmup_s: float
    timeout_s: float
    # swarm processes asked for (0: the placement's); the swarm's record has the real count
    workers: int = field(metadata={RECORD_KEY: None})
    slo_p99_ms: float  # the one place the SLO is recorded: every trial carries its case's
    servers: tuple[str, ...] = _unrecorded()
    swarm_args: tuple[str, ...] = ()
    idle_connections: int = 0  # held open beside the busy ones, never sent on (C10K)
    connect_rate: float = 0.0  # connections per second while connecting; 0: all at once
    skip_servers: tuple[tuple[str, str], ...] = _unrecorded()  # (model, why it does not run)
    # equal offered load: the rate (the same for every model) is this share of the slowest
    # serving model's closed-loop maximum in ``base``, chosen once per run (bench/run/rates.py)
    equal_load: float | None = field(default=None, metadata={RECORD_KEY: "equal_load_share"})
    # churn: each connection makes this many requests, closes, and a fresh one takes its place
    # (0: connections last the whole trial)
    requests_per_connection: int = 0
    # slowloris: connections held beside the busy ones, each sending part of a frame and then
    # a byte every slowloris_interval_s seconds
    slowloris: int = field(default=0, metadata={RECORD_KEY: "slowloris_connections"})
    slowloris_interval_s: float = 2.0
    # the case this one is compared with, model by model, in the same run (head-of-line
    # blocking and slowloris: the same requests without the WORK or the slow connections)
    reference: str | None = field(default=None, metadata={RECORD_KEY: "reference_case"})
    # steady state (clients/_steady.py): the window opens once every connection is answered
    # and throughput has settled (warmup_s is then the cap), and lasts for min_requests
    # replies at the settled rate, from duration_s up to max_duration_s
    steady: bool = False
    min_requests: int = 0
    max_duration_s: float = 0.0
    # the server's CPUs: the first this many usable ones (0: the placement's); 2 on a 2-core
    # machine gives the server both, beside a light load (the classics' cores and convoy)
    server_cpu_count: int = 0
    # coordinated omission: the server is stopped (SIGSTOP to its process group) this many
    # seconds into the measured window, for pause_s seconds, then continued
    pause_at_s: float = 0.0
    pause_s: float = 0.0
    # rounds of this case (0: the scenario's repeat): a case whose statistic needs more
    # rounds, or whose trials are long, says so here; its rounds are the run's first ones
    rounds: int = field(default=0, metadata={RECORD_KEY: "case_rounds"})


@dataclass(frozen=True)
class ModelSpec:
    """A server to run: a registry model (or variant of one) under one interpreter."""

    label: str = field(metadata={RECORD_KEY: "model"})
    model: str = field(metadata={RECORD_KEY: "server_model"})
    args: tuple[str, ...] = field(metadata={RECORD_KEY: "model_args"})
    interpreter: str
    interpreter_tag: str | None = None
    # e.g. (("PYTHON_GIL", "1"),); a table in the record
    interpreter_env: tuple[tuple[str, str], ...] = field(default=(), metadata={RECORD_AS: dict})


def _record_items(kind: type) -> Iterator[tuple[str, str, Callable[[Any], Any] | None]]:
    """(attribute, record key, writer) of a spec dataclass's recorded fields, in order."""
    for item in fields(kind):
        key = item.metadata.get(RECORD_KEY, item.name)
        if key is not None:
            yield item.name, key, item.metadata.get(RECORD_AS)


def record_keys(kind: type) -> list[str]:
    """The trial record keys a spec dataclass (``Case``, ``ModelSpec``) writes, in order."""
    return [key for _, key, _ in _record_items(kind)]


def _as_record(spec: Any) -> dict[str, Any]:
    record = {}
    for name, key, writer in _record_items(type(spec)):
        value = getattr(spec, name)
        if writer is not None:
            value = writer(value)
        elif isinstance(value, tuple):
            value = list(value)  # what JSON gives back
        record[key] = value
    return record


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs: a case, a server and a repetition (the runner turns it into
    a trial record whose identity is ``as_record()``)."""

    case: Case
    server: ModelSpec
    repeat: int
    ready_timeout_s: float = 10.0
    stop_timeout_s: float = 3.0
    id_override: str | None = None  # a caller's own trial id (the regression gate's samples)

    @property
    def trial_id(self) -> str:
        """``<case>--<model>--r<repeat>`` (docs/results-format.md)."""
        return self.id_override or f"{self.case.name}--{self.server.label}--r{self.repeat}"

    @property
    def model(self) -> str:
        """The model's label (``epoll-edge``, ``threaded@python3.13t``): the series name."""
        return self.server.label

    @property
    def sockets(self) -> int:
        """Connections the swarm holds: the busy ones, the idle ones and the slow ones."""
        return self.case.connections + self.case.idle_connections + self.case.slowloris

    def ramp_s(self) -> float:
        """Seconds the swarm spends connecting before the load starts."""
        rate = self.case.connect_rate
        return self.sockets / rate if rate > 0 else 0.0

    def with_rate(self, rate: float) -> TrialSpec:
        """This trial with its open-loop rate filled in (sweeps learn it during the run)."""
        return replace(self, case=replace(self.case, rate=rate))

    def as_record(self) -> dict[str, Any]:
        """The trial record's identity and settings, keyed as docs/results-format.md says."""
        return {"trial_id": self.trial_id, **_as_record(self.case), **_as_record(self.server),
                "repeat": self.repeat}

    @staticmethod
    def record_fields() -> list[str]:
        """The keys ``as_record()`` writes, in its order (the analysis's identity columns)."""
        return ["trial_id", *record_keys(Case), *record_keys(ModelSpec), "repeat"]


# ---------------------------------------------------------------- formats and upgrades


class RecordError(Exception):
    """A run folder or record this concbench cannot read; the message names the file."""


class UnreadableRecord(RecordError):
    """One trial file that is not valid JSON or not a trial record (listed, then skipped)."""


def _format_of(record: Mapping[str, Any], where: str) -> int:
    """A record's format: 0 when it has none (written before the field existed)."""
    version = record.get("format", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RecordError(f"{where}: format {version!r} is not a record format")
    if version > FORMAT:
        raise RecordError(f"{where}: record format {version} is newer than this concbench "
                          f"reads (up to {FORMAT}); read it with a newer concbench")
    return version


def _spec_slo_ms(spec: Mapping[str, Any], case: Any) -> float | None:
    """A format-0 run's SLO for a case: the case's in scenario_spec.cases, else the scenario's
    top-level slo_p99_ms (the two places the runner has always written it)."""
    for entry in spec.get("cases") or []:
        if isinstance(entry, dict) and entry.get("name") == case \
                and isinstance(entry.get("slo_p99_ms"), int | float):
            return float(entry["slo_p99_ms"])
    top = spec.get("slo_p99_ms")
    return float(top) if isinstance(top, int | float) and not isinstance(top, bool) else None


def _trial_0_to_1(record: dict[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Format 0 -> 1: the SLO (ms) and the histogram's unit in their one place.

    The runner's format-0 records already carry ``slo_p99_ms`` and the swarm's
    ``histogram_unit`` ("us", the only unit it has written); this fills them for records that
    lack them (hand-made ones: the report predates the runner) from run.json's scenario_spec,
    so no reader has to search for an SLO or match a histogram's unit against its p50.
    """
    upgraded = {**record, "format": 1}
    if not isinstance(upgraded.get("slo_p99_ms"), int | float):
        upgraded["slo_p99_ms"] = _spec_slo_ms(meta.get("scenario_spec") or {}, record.get("case"))
    swarm = upgraded.get("swarm")
    if isinstance(swarm, dict) and swarm.get("histogram") and "histogram_unit" not in swarm:
        upgraded["swarm"] = {**swarm, "histogram_unit": "us"}
    return upgraded


# from format N to N + 1; run.json's shape did not change from 0 to 1 beyond the stamp
TRIAL_UPGRADES: dict[int, Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]] = {
    0: _trial_0_to_1,
}


def upgrade_run(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """run.json in the current format (refusing a newer one)."""
    if _format_of(meta, where) < FORMAT:
        meta = {**meta, "format": FORMAT}
    return meta


def upgrade_trial(record: dict[str, Any], meta: Mapping[str, Any], where: str
                  ) -> dict[str, Any]:
    """A trial record in the current format, one explicit step per format (refusing a newer
    one); ``meta`` is its run.json (already upgraded)."""
    version = _format_of(record, where)
    while version < FORMAT:
        record = TRIAL_UPGRADES[version](record, meta)
        version += 1
    return record


def read_trial(path: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """One trial record, upgraded. UnreadableRecord for a file that is not one; RecordError
    for a format this concbench cannot read."""
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:
        raise UnreadableRecord(str(error)) from None
    if not isinstance(record, dict) or not isinstance(record.get("trial_id"), str):
        raise UnreadableRecord("not a trial record")
    return upgrade_trial(record, meta, str(path))


# ---------------------------------------------------------------- reading a run folder


@dataclass
class RunFolder:
    """A run folder as read: run.json and every readable trial record, both upgraded."""

    run_dir: Path
    meta: dict[str, Any]
    trials: dict[str, dict[str, Any]]  # by trial id: the plan's order, then unplanned by name
    unreadable: list[str] = field(default_factory=list)  # "<file>: why"


def load_run_folder(run_dir: Path) -> RunFolder:
    """Read ``run_dir``'s run.json and trials/*.json in the current format. RecordError when
    it is no run folder or holds a format this concbench cannot read."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecordError(f"{run_dir}: no such run folder")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise RecordError(f"{run_dir}: not a run folder (run.json is missing)")
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError) as error:
        raise RecordError(f"{meta_path}: unreadable ({error})") from None
    if not isinstance(meta, dict):
        raise RecordError(f"{meta_path}: not a run record")
    meta = upgrade_run(meta, str(meta_path))
    trials: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    for path in sorted((run_dir / "trials").glob("*.json")):
        try:
            record = read_trial(path, meta)
        except UnreadableRecord as error:
            unreadable.append(f"{path.name}: {error}")
            continue
        trials[record["trial_id"]] = record
    return RunFolder(run_dir, meta, _in_plan_order(meta, trials), unreadable)


def _in_plan_order(meta: Mapping[str, Any], trials: dict[str, dict[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Trials in the run's plan order, then any unplanned ones by name."""
    plan = [tid for tid in meta.get("plan") or [] if tid in trials]
    seen = set(plan)
    ordered = plan + sorted(tid for tid in trials if tid not in seen)
    return {tid: trials[tid] for tid in ordered}


# ---------------------------------------------------------------- writing a run folder


class RunStore:
    """One run folder: ``run.json``, ``trials/<trial_id>.json`` and ``logs/``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.trials_dir = self.run_dir / "trials"
        self.logs_dir = self.run_dir / "logs"

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def run_json(self) -> Path:
        return self.run_dir / "run.json"

    @classmethod
    def default_dir(cls, scenario: str, root: Path = RESULTS_ROOT) -> Path:
        """results/<UTC timestamp>-<scenario>/"""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return root / f"{stamp}-{scenario}"

    @classmethod
    def create(cls, run_dir: Path) -> RunStore:
        """A new, empty run folder (refusing one that already holds a run)."""
        store = cls(run_dir)
        if store.run_json.exists():
            raise FileExistsError(f"{run_dir} already holds a run; use --resume {run_dir}")
        store.trials_dir.mkdir(parents=True, exist_ok=True)
        store.logs_dir.mkdir(parents=True, exist_ok=True)
        return store

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        """An existing run folder."""
        store = cls(run_dir)
        if not store.run_json.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no run.json)")
        store.trials_dir.mkdir(exist_ok=True)
        store.logs_dir.mkdir(exist_ok=True)
        return store

    def read_run(self) -> dict[str, Any]:
        """run.json as written (its ``format`` unchanged: see ``load_run_folder``)."""
        return read_json(self.run_json)

    def write_run(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, data)

    def update_run(self, **changes: Any) -> dict[str, Any]:
        """Read run.json, change some keys, write it back atomically."""
        data = self.read_run()
        data.update(changes)
        self.write_run(data)
        return data

    def trial_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.json"

    def has_trial(self, trial_id: str) -> bool:
        return self.trial_path(trial_id).is_file()

    def write_trial(self, record: dict[str, Any]) -> Path:
        path = self.trial_path(record["trial_id"])
        atomic_write_json(path, record)
        return path

    def load_trials(self) -> dict[str, dict[str, Any]]:
        """Every finished trial's record, by trial id, upgraded as ``load_run_folder`` does
        (unreadable files are skipped: the runner runs those trials again)."""
        meta = upgrade_run(self.read_run(), str(self.run_json)) if self.run_json.is_file() \
            else {}
        records = {}
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                record = read_trial(path, meta)
            except UnreadableRecord:
                continue
            records[record["trial_id"]] = record
        return records
