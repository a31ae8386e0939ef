"""Scenarios: TOML files that name the points to measure (the trial plan: bench/run/planning.py).

A scenario file has top-level settings and one ``[[group]]`` table per part of the question
(``echo``, ``cpu``, ``io``, ``sweep``...). Each group lists its axes; every combination of
them is a *case* (``echo64-c16-closed``); every case runs once per model per repetition.
See ``bench/scenarios/default.toml`` for a commented example of every key. A trial is a
case, a model and a repetition: ``Case``, ``ModelSpec`` and ``TrialSpec`` are declared with the
record they become, in ``bench/store.py``, and importable from here.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.run.scenario_check import (
    ScenarioError,
    as_list,
    check_type,
    checked_choice,
    checked_name,
    interpreter_list,
    model_args_table,
    non_negative,
    positive,
    positive_int,
    reject_unknown,
    skip_servers_table,
    str_list,
    strings,
    variants_table,
)

# the trial's parts, importable from here as the docstring says (the explicit aliases mark a
# re-export)
from bench.store import Case
from bench.store import ModelSpec as ModelSpec
from bench.store import TrialSpec as TrialSpec
from clients import mix as clients_mix

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
PLACEMENTS = ("split", "same", "none")
MODES = ("closed", "open")

# settings a group inherits from the top level (and may override)
TRIAL_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "duration_s": (int, float),
    "warmup_s": (int, float),
    "timeout_s": (int, float),
    "workers": int,
    "slo_p99_ms": (int, float),
    "swarm_args": list,
    "connect_rate": (int, float),
    "steady": bool,
    "min_requests": int,
    "max_duration_s": (int, float),
}
TOP_DEFAULTS: dict[str, Any] = {
    "description": "",
    "servers": [],
    "interpreters": [],
    "repeat": 1,
    "placement": "split",
    "server_cores": 1,
    "ready_timeout_s": 10.0,
    "stop_timeout_s": 3.0,
    "duration_s": 2.0,
    "warmup_s": 0.5,
    "timeout_s": 5.0,
    "workers": 0,
    "slo_p99_ms": 10.0,
    "swarm_args": [],
    "connect_rate": 0,
    "steady": False,
    "min_requests": 0,
    "max_duration_s": 0,
    "model_args": {},
    "variants": {},
    "window_scale": 1.0,
}
# the workloads that tell models apart (bench/run/workloads.py): churn, slowloris, and the case
# a trial is set beside
WORKLOAD_KEYS = ("requests_per_connection", "slowloris", "slowloris_interval_s", "reference",
                 "pause_at_s", "pause_s")
GROUP_KEYS = {"name", "label", "mix", "payload_bytes", "connections", "mode", "pipeline",
              "rates", "fractions", "equal_load", "base", "servers", "idle_connections",
              "skip_servers", "server_cpu_count", "rounds", *WORKLOAD_KEYS, *TRIAL_SETTINGS}


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: settings, cases in run order, and the data it came from."""

    name: str
    description: str
    source: str
    data: dict[str, Any]
    cases: tuple[Case, ...]
    servers: tuple[str, ...]
    interpreters: tuple[Any, ...]
    repeat: int
    placement: str
    server_cores: int
    ready_timeout_s: float
    stop_timeout_s: float
    slo_p99_ms: float
    model_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    variants: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario for run.json (``from_dict`` rebuilds it)."""
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "repeat": self.repeat, "placement": self.placement, "slo_p99_ms": self.slo_p99_ms,

            "servers": list(self.servers), "data": self.data,
            "cases": [asdict(case) for case in self.cases],
        }


def scenario_names() -> list[str]:
    """Scenario files shipped in bench/scenarios/, by name."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def find(name_or_path: str) -> Path:
    """The file of a shipped scenario name, or an explicit path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        if not path.is_file():
            raise ScenarioError(f"scenario file {name_or_path} does not exist")
        return path
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}; shipped: {', '.join(scenario_names())}"
            " (or give a path to a .toml file)")
    return shipped


def load(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read, override (CLI options) and validate a scenario."""
    path = find(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    data.setdefault("name", path.stem)
    return from_dict(apply_overrides(data, overrides or {}), source=str(path))


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line settings replace the file's, in every group too."""
    data = {**data, "group": [dict(group) for group in data.get("group", [])]}
    for key, value in overrides.items():
        if value is None:
            continue
        data[key] = value
        if key in TRIAL_SETTINGS or key == "servers":
            for group in data["group"]:
                group.pop(key, None)
    return data


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
    """Validate scenario data (as parsed from TOML) into a Scenario."""
    where = source
    known = set(TOP_DEFAULTS) | {"name", "group"}
    reject_unknown(data, known, where)
    top = {**TOP_DEFAULTS, **data}
    name = checked_name(top.get("name"), f"{where}: name")
    for key, kind in TRIAL_SETTINGS.items():
        check_type(top[key], kind, f"{where}: {key}")
    groups = data.get("group")
    if not isinstance(groups, list) or not groups:
        raise ScenarioError(f"{where}: needs at least one [[group]]")
    cases: list[Case] = []
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            raise ScenarioError(f"{where}: group {index + 1} is not a table")
        cases.extend(_expand_group(group, top, f"{where}: group {group.get('name', index + 1)}"))
    cases = _dedupe_and_check(cases, where)
    return Scenario(
        name=name, description=str(top["description"]), source=source, data=dict(data),
        cases=tuple(cases), servers=tuple(str_list(top["servers"], f"{where}: servers")),
        interpreters=tuple(interpreter_list(top["interpreters"], where)),
        repeat=positive_int(top["repeat"], f"{where}: repeat"),
        placement=checked_choice(top["placement"], PLACEMENTS, f"{where}: placement"),
        server_cores=positive_int(top["server_cores"], f"{where}: server_cores"),
        ready_timeout_s=positive(top["ready_timeout_s"], f"{where}: ready_timeout_s"),
        stop_timeout_s=positive(top["stop_timeout_s"], f"{where}: stop_timeout_s"),
        slo_p99_ms=positive(top["slo_p99_ms"], f"{where}: slo_p99_ms"),
        model_args=model_args_table(top["model_args"], where),
        variants=variants_table(top["variants"], where),
    )


def _expand_group(group: Mapping[str, Any], top: Mapping[str, Any], where: str) -> list[Case]:
    """Every combination of one group's axes, as cases (open-loop sweep bases first)."""
    reject_unknown(group, GROUP_KEYS, where)
    gname = checked_name(group.get("name"), f"{where}: name")
    settings = {key: group.get(key, top[key]) for key in TRIAL_SETTINGS}
    for key, kind in TRIAL_SETTINGS.items():
        check_type(settings[key], kind, f"{where}: {key}")
    duration = positive(settings["duration_s"], f"{where}: duration_s")
    warmup = non_negative(settings["warmup_s"], f"{where}: warmup_s")
    timeout = positive(settings["timeout_s"], f"{where}: timeout_s")
    workers = non_negative(settings["workers"], f"{where}: workers")
    slo = positive(settings["slo_p99_ms"], f"{where}: slo_p99_ms")
    connect_rate = non_negative(settings["connect_rate"], f"{where}: connect_rate")
    swarm_args = tuple(strings(settings["swarm_args"], f"{where}: swarm_args"))
    # window_scale stretches every window (and the requests it is sized for): the same
    # scenario measured longer, to check that its answer does not depend on the window
    scale = positive(top["window_scale"], f"{where}: window_scale")
    duration = duration * scale
    min_requests = int(non_negative(settings["min_requests"], f"{where}: min_requests") * scale)
    max_duration = non_negative(settings["max_duration_s"], f"{where}: max_duration_s") * scale
    if min_requests and not settings["steady"]:
        raise ScenarioError(f"{where}: min_requests sizes the window from the settled rate: "
                            "it needs steady = true")
    idles = as_list(group.get("idle_connections", 0), int, f"{where}: idle_connections")
    skip = skip_servers_table(group.get("skip_servers", {}), f"{where}: skip_servers")
    mixes = as_list(group.get("mix", "echo:64"), str, f"{where}: mix")
    payloads: list[int | None] = list(as_list(group.get("payload_bytes", []), int,
                                               f"{where}: payload_bytes")) or [None]
    connections = as_list(group.get("connections", 16), int, f"{where}: connections")
    pipelines = as_list(group.get("pipeline", 1), int, f"{where}: pipeline")
    cpu_counts = as_list(group.get("server_cpu_count", 0), int, f"{where}: server_cpu_count")
    rounds = int(non_negative(group.get("rounds", 0), f"{where}: rounds"))
    mode = checked_choice(group.get("mode", "closed"), MODES, f"{where}: mode")
    servers = tuple(str_list(group.get("servers", []), f"{where}: servers"))
    points = _open_points(group, mode, where)
    label = group.get("label")
    workload = _workload(group, mode, where)
    cases = []
    for mix_t, payload, conns, idle, pipeline, cpu_count in itertools.product(
            mixes, payloads, connections, idles, pipelines, cpu_counts):
        mix = _substitute_payload(mix_t, payload, where)
        positive_int(conns, f"{where}: connections")
        non_negative(idle, f"{where}: idle_connections")
        positive_int(pipeline, f"{where}: pipeline")
        non_negative(cpu_count, f"{where}: server_cpu_count")
        stem = checked_name(label, f"{where}: label") if label else mix_label(mix)
        stem = (f"{stem}-c{conns}" + (f"-idle{idle}" if idle else "")
                + (f"-p{pipeline}" if pipeline > 1 else "") + (f"-cpu{cpu_count}" if cpu_count
                                                              else "")
                + _workload_suffix(workload))
        common = dict(group=gname, mix=mix, payload_bytes=payload or echo_payload(mix),
                      connections=conns, pipeline=pipeline, duration_s=float(duration),
                      warmup_s=float(warmup), timeout_s=float(timeout), workers=int(workers),
                      slo_p99_ms=float(slo), servers=servers, swarm_args=swarm_args,
                      idle_connections=int(idle), connect_rate=float(connect_rate),
                      skip_servers=skip, steady=bool(settings["steady"]),
                      min_requests=int(min_requests),
                      max_duration_s=float(max(max_duration, duration)),
                      server_cpu_count=int(cpu_count),
                      rounds=rounds,
                      **workload)
        if mode == "closed":
            cases.append(Case(name=f"{stem}-closed", mode="closed", rate=None, fraction=None,
                              base=None, **common))
            continue
        base = group.get("base")
        if points[0] == "fractions" and base is None:
            base = f"{stem}-closed"
            cases.append(Case(name=base, mode="closed", rate=None, fraction=None, base=None,
                              **common))
        if points[0] == "equal_load":
            cases.append(Case(name=f"{stem}-open-equal", mode="open", rate=None, fraction=None,
                              base=str(group["base"]), equal_load=points[1][0], **common))
            continue
        for value in points[1]:
            if points[0] == "rates":
                cases.append(Case(name=f"{stem}-open-r{value:g}", mode="open", rate=float(value),
                                  fraction=None, base=None, **common))
            else:
                cases.append(Case(name=f"{stem}-open-r{round(value * 100)}pct", mode="open",
                                  rate=None, fraction=float(value), base=str(base), **common))
    return cases


def _workload(group: Mapping[str, Any], mode: str, where: str) -> dict[str, Any]:
    """A group's workload keys as Case fields: churn's requests per connection, slowloris'
    connections and interval, and the reference case."""
    per_connection = int(non_negative(group.get("requests_per_connection", 0),
                                       f"{where}: requests_per_connection"))
    if per_connection and mode != "closed":
        raise ScenarioError(f"{where}: requests_per_connection (churn) needs mode = \"closed\"")
    check_type(group.get("slowloris", 0), int, f"{where}: slowloris")
    reference = group.get("reference")
    pause = float(non_negative(group.get("pause_s", 0.0), f"{where}: pause_s"))
    pause_at = float(non_negative(group.get("pause_at_s", 0.0), f"{where}: pause_at_s"))
    if pause_at and not pause:
        raise ScenarioError(f"{where}: pause_at_s needs pause_s (how long the server stops)")
    return {"requests_per_connection": per_connection, "pause_s": pause, "pause_at_s": pause_at,
            "slowloris": int(non_negative(group.get("slowloris", 0), f"{where}: slowloris")),
            "slowloris_interval_s": positive(group.get("slowloris_interval_s", 2.0),
                                              f"{where}: slowloris_interval_s"),
            "reference": None if reference is None else checked_name(reference,
                                                                     f"{where}: reference")}


def _workload_suffix(workload: Mapping[str, Any]) -> str:
    """What a case's name says of its workload: -churn (one request per connection) or -rpcK,
    -slowM."""
    per_connection, slow = workload["requests_per_connection"], workload["slowloris"]
    suffix = "-churn" if per_connection == 1 else (f"-rpc{per_connection}" if per_connection
                                                    else "")
    pause = workload["pause_s"]
    return suffix + (f"-slow{slow}" if slow else "") + (f"-pause{pause:g}s" if pause else "")


def _open_points(group: Mapping[str, Any], mode: str, where: str) -> tuple[str, list[float]]:
    """An open-loop group's absolute ``rates``, relative ``fractions`` or ``equal_load``
    share (exactly one)."""
    given = [key for key in ("rates", "fractions", "equal_load") if key in group]
    if mode == "closed":
        if given or "base" in group:
            raise ScenarioError(f"{where}: rates/fractions/equal_load/base need "
                                "mode = \"open\"")
        return ("", [])
    if len(given) != 1:
        raise ScenarioError(f"{where}: an open-loop group needs exactly one of rates "
                            "(requests/s), fractions (of each model's closed-loop maximum) or "
                            "equal_load (one rate for every model)")
    if given[0] == "equal_load":
        share = positive(group["equal_load"], f"{where}: equal_load")
        if share > 1:
            raise ScenarioError(f"{where}: equal_load is a share of the slowest model's "
                                "closed-loop maximum (0.5 = half)")
        if "base" not in group:
            raise ScenarioError(f"{where}: equal_load needs base = \"<closed case>\" (where "
                                "the closed-loop maxima are measured)")
        return ("equal_load", [share])
    key = given[0]
    values = [float(v) for v in as_list(group[key], (int, float), f"{where}: {key}")]
    if not values or any(v <= 0 for v in values):
        raise ScenarioError(f"{where}: {key} must be positive numbers")
    if key == "fractions" and any(v > 5 for v in values):
        raise ScenarioError(f"{where}: fractions are of the closed-loop maximum (0.1 = 10%)")
    if key == "rates" and "base" in group:
        raise ScenarioError(f"{where}: base only makes sense with fractions")
    return (key, values)


def _dedupe_and_check(cases: list[Case], where: str) -> list[Case]:
    """Drop repeated identical cases (a sweep base named twice); check names and bases."""
    seen: dict[str, Case] = {}
    ordered: list[Case] = []
    for case in cases:
        if case.name in seen:
            if seen[case.name] != replace(case, group=seen[case.name].group):
                raise ScenarioError(f"{where}: two different cases are both named {case.name}")
            continue
        seen[case.name] = case
        ordered.append(case)
    position = {case.name: index for index, case in enumerate(ordered)}
    for index, case in enumerate(ordered):
        if case.reference is not None:
            if case.reference not in position:
                raise ScenarioError(f"{where}: {case.name}: reference {case.reference!r} is not "
                                    "a case of this scenario")
            if position[case.reference] > index:
                raise ScenarioError(f"{where}: {case.name}: reference {case.reference} must "
                                    "come earlier")
        if case.base is None:
            continue
        base = seen.get(case.base)
        if base is None or base.mode != "closed":
            raise ScenarioError(f"{where}: {case.name}: base {case.base!r} is not a closed-loop "
                                f"case of this scenario")
        if position[case.base] > index:
            raise ScenarioError(f"{where}: {case.name}: base {case.base} must come earlier")
    return ordered


def mix_label(mix: str) -> str:
    """A short name for a mix: echo:64 -> echo64, work:2000 -> work2000, sleep:10000 ->
    sleep10ms; several ops are joined with '+'."""
    parts = []
    for op, arg, _weight in parse_mix(mix):
        if op == "echo":
            parts.append(f"echo{_bytes_label(arg)}")
        elif op == "sleep":
            parts.append(f"sleep{arg // 1000}ms" if arg % 1000 == 0 else f"sleep{arg}us")
        else:
            parts.append(f"{op}{arg}")
    return "+".join(parts)


def parse_mix(mix: str, where: str = "mix") -> list[tuple[str, int, float]]:
    """``op:arg=weight,...`` into (op, arg, weight) triples, by the swarm's own parser."""
    try:
        return [(entry.op, entry.arg, entry.weight) for entry in clients_mix.parse_mix(mix)]
    except clients_mix.MixError as error:
        raise ScenarioError(f"{where}: {error}") from None


def echo_payload(mix: str) -> int | None:
    """The payload size of a pure-echo mix (None for anything else)."""
    ops = parse_mix(mix)
    return ops[0][1] if len(ops) == 1 and ops[0][0] == "echo" else None


def _bytes_label(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}k"
    return str(size)


def _substitute_payload(template: str, payload: int | None, where: str) -> str:
    if payload is None:
        if "{payload}" in template:
            raise ScenarioError(f"{where}: mix {template!r} uses {{payload}} but the group has "
                                "no payload_bytes")
        parse_mix(template, f"{where}: mix")
        return template
    if "{payload}" not in template:
        raise ScenarioError(f"{where}: payload_bytes is set, so mix needs {{payload}}, "
                            f"e.g. \"echo:{{payload}}\"")
    mix = template.replace("{payload}", str(payload))
    parse_mix(mix, f"{where}: mix")
    return mix
