"""Which of a trial's figures may stand for its server: decided per metric, in one place.

A trial's figures come from two sides. The client's (throughput, latency) are what the load
generator saw; the server's (CPU and context switches per request, memory, threads,
descriptors) were sampled from the server's processes. Each condition leaves out only the
figures it corrupts:

- a failed trial has no figure at all;
- a saturated client: its throughput and latency describe the load generator, not the server;
  the server's own figures were measured honestly at the load it got, and stand;
- request errors: the unanswered requests have no latency (the percentiles would leave out
  the worst) and the throughput is not what serving every client gives; the per-request
  server figures stand while the unanswered are at most ``PER_REQUEST_ERROR_LIMIT`` of the
  requests (the work spent on them can move a per-request figure by no more than that);
- connections the server did not hold (turned away with ERROR 4, refused or timed out while
  connecting, or waiting in the kernel's accept queue because the model serves only
  ``CLIENTS_AT_ONCE`` at a time by design): RSS per connection divides by connections it
  never had. A model that queues by design also has no throughput or latency that stands for
  serving every connection: its waiting clients are in neither;
- Little's law broken (closed loop): throughput × mean latency ÷ requests in flight
  (connections × pipeline) is 1 when every connection always has its requests in flight and
  both figures come from one clock over one window. Outside 1 ± ``LITTLE_TOLERANCE`` time was
  lost in the client (a worker stopped across the window's edge, connections that came late or
  were lost) or a clock is wrong: its throughput and latency are left out, like a saturated
  client's; the server's figures stand. The ratio is ``derived.littles_law_ratio`` where the
  runner recorded it, else computed here from the swarm record (which states its ``pipeline``;
  a record that does not is not judged by it). It cannot see a client that is merely slow
  inside the window: the swarm stamps a send at the instant it read the reply before it, so a
  slow client lengthens latency and lowers throughput together (the saturation check's job).
- the client's own lag is the latency tail (open loop): the swarm measures from the schedule,
  so when its own send lateness reaches the tail (``swarm.client.lag_is_tail``: two workers
  sharing a core, one spinning while the other waits for it) the percentiles are the client's
  pauses, not the server's; the latency is left out, the throughput (the offered rate, met)
  and the server's figures stand.

``judge`` is the one function that decides; the summary frame's ``ok_<metric>`` columns, every
median, chart, verdict, the terminal summary, summary.csv and answer.json read its answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

MARK_SATURATED = "†"
MARK_ERRORS = "‡"
MARK_QUEUES = "§"
MARK_LITTLE = "¶"
MARK_LAG = "°"
MARK_FAILED = "✗"
MARK_NOTES = {
    MARK_SATURATED: "client saturated: its throughput and latency describe the load generator "
                    "and are left out; its server-side figures stand",
    MARK_ERRORS: "request errors: throughput and latency are left out (and per-request server "
                 "figures past 1 % unanswered)",
    MARK_QUEUES: "serves a fixed number of clients at once by design: the other connections "
                 "wait, so its throughput, latency and RSS per connection are left out",
    MARK_LITTLE: "Little's law broken (throughput × mean latency ≠ requests in flight): time "
                 "lost in the client or a wrong clock, so its throughput and latency are left "
                 "out",
    MARK_LAG: "open loop: the client's own send lag is the latency tail, so its latency is "
              "left out; its throughput and server-side figures stand",
    MARK_FAILED: "the trial failed (no figures)",
}

# churn's connections per second is its throughput over K; head-of-line's cheap requests' p99
# (derived.reference_kind_p99_us) is a latency like the others
THROUGHPUT = ("throughput_rps", "connections_per_s")
LATENCY = ("p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us",
           "reference_kind_p99_us")
CLIENT_SIDE = THROUGHPUT + LATENCY  # what the load generator measured
# server cost / responses (churn's per connection: over connections completed, K requests each)
PER_REQUEST = ("cpu_us_per_request", "ctx_switches_per_request", "cpu_us_per_connection")
PER_CONNECTION = ("rss_per_connection_bytes",)  # divided by the connections the swarm held
# RSS per connection *held* divides by the server's own descriptors: it stands where the
# server turned connections away or queued them (the C10K section's figure)
SERVER_SIDE = ("server_cpu_percent", "threads_max", "fds_max", "rss_max",
               "rss_per_held_connection_bytes", "error_rate")
JUDGED = CLIENT_SIDE + PER_REQUEST + PER_CONNECTION + SERVER_SIDE
# the (case, model, metric) cells counted as valid or not in the report and answer.json
CELL_METRICS = ("throughput_rps", "p50_us", "p99_us", "p99_9_us", "cpu_us_per_request",
                "ctx_switches_per_request", "rss_per_connection_bytes", "threads_max",
                "fds_max")
PER_REQUEST_ERROR_LIMIT = 0.01
LITTLE_TOLERANCE = 0.05  # |throughput × mean latency ÷ in flight − 1| allowed
REASONS_JOIN = " | "  # between a trial's reasons (a reason may hold '; ', e.g. error kinds)
# error kinds that mean a connection was never held by the server (clients/_worker.py)
_NOT_HELD = re.compile(r"^(over_capacity|connect_.*)$")

COLUMNS = ["failed", "client_saturated", "has_errors", "queues_at", "littles_law_ratio",
           "littles_law_broken", "client_lagged", "excluded", "flags",
           "exclusion_reason", "invalid_figures", *[f"ok_{m}" for m in JUDGED]]


def ok_column(metric: str) -> str:
    """The summary frame's column saying whether ``metric`` of a trial is valid."""
    return f"ok_{metric}"


@dataclass(frozen=True)
class Validity:
    """What ``judge`` decided about one trial: which figures stand, and why the others do not."""

    failed: bool
    client_saturated: bool
    has_errors: bool
    queues_at: int | None  # clients served at once, when the model queues the rest by design
    invalid: Mapping[str, str] = field(default_factory=dict)  # metric -> why it is left out
    unmeasured: frozenset[str] = frozenset()  # figures the record has no number for
    littles_law_ratio: float | None = None  # closed loop: throughput × mean ÷ in flight
    littles_law_broken: bool = False  # the ratio is outside 1 ± LITTLE_TOLERANCE
    client_lagged: bool = False  # open loop: the client's own send lag is the latency tail

    def valid(self, metric: str) -> bool:
        """Whether ``metric`` of this trial may stand for its server."""
        return metric not in self.invalid and metric not in self.unmeasured

    @property
    def excluded(self) -> bool:
        """Its throughput or latency is left out (the trial is flagged in the tables)."""
        return any(m in self.invalid for m in CLIENT_SIDE)

    @property
    def flags(self) -> str:
        """The trial's markers: ✗ alone when it failed, else †, ‡ and § as they apply."""
        if self.failed:
            return MARK_FAILED
        return "".join(mark for mark, on in ((MARK_SATURATED, self.client_saturated),
                                              (MARK_ERRORS, self.has_errors),
                                              (MARK_QUEUES, self.queues_at is not None),
                                              (MARK_LITTLE, self.littles_law_broken),
                                              (MARK_LAG, self.client_lagged)) if on)

    @property
    def reason(self) -> str:
        """'figures: why | ...' for every left-out group ('' when everything stands)."""
        by_reason: dict[str, list[str]] = {}
        for metric, why in self.invalid.items():
            by_reason.setdefault(why, []).append(metric)
        return REASONS_JOIN.join(f"{_short(metrics)}: {why}"
                                 for why, metrics in by_reason.items())

    def columns(self) -> dict[str, Any]:
        """The summary frame's validity columns (``COLUMNS``)."""
        return {"failed": self.failed, "client_saturated": self.client_saturated,
                "has_errors": self.has_errors, "queues_at": self.queues_at,
                "littles_law_ratio": self.littles_law_ratio,
                "littles_law_broken": self.littles_law_broken,
                "client_lagged": self.client_lagged,
                "excluded": self.excluded, "flags": self.flags,
                "exclusion_reason": self.reason,
                "invalid_figures": " ".join(m for m in JUDGED if m in self.invalid),
                **{ok_column(m): self.valid(m) for m in JUDGED}}


def _short(metrics: list[str]) -> str:
    """A group of metrics named briefly: 'throughput and latency', or the names."""
    names = set(metrics)
    parts = []
    if set(CLIENT_SIDE) <= names:
        parts.append("throughput and latency")
        names -= set(CLIENT_SIDE)
    elif set(LATENCY) <= names:
        parts.append("latency")
        names -= set(LATENCY)
    parts += [m for m in JUDGED if m in names]
    return ", ".join(parts)


def judge(record: Mapping[str, Any],
          clients_at_once: Callable[[Mapping[str, Any]], int | None] | None = None) -> Validity:
    """Decide which of a trial record's figures are valid (docs/results-format.md: ``status``,
    ``derived.client_saturated``, ``derived.errors`` and ``error_rate``, the swarm's errors by
    kind and connections established). ``clients_at_once`` says how many clients the trial's
    model serves at once by design (default: the model registry's ``CLIENTS_AT_ONCE``)."""
    if record.get("status") != "ok":
        why = f"failed: {record.get('failure') or 'no reason recorded'}"
        return Validity(True, False, False, None, {m: why for m in JUDGED})
    derived = record.get("derived") or {}
    invalid: dict[str, str] = {}
    saturated = bool(derived.get("client_saturated"))
    errors = _count(derived.get("errors"))
    bound = (clients_at_once or registry_clients_at_once)(record)
    connections = _count(record.get("connections"))
    queues = bound if bound is not None and connections > bound else None
    if saturated:
        why = saturation_reasons(record)
        _leave_out(invalid, CLIENT_SIDE, "client saturated" + (f" ({why})" if why else ""))
    ratio = littles_law(record)
    broken = ratio is not None and abs(ratio - 1) > LITTLE_TOLERANCE
    if broken:
        _leave_out(invalid, CLIENT_SIDE,
                   f"Little's law broken: throughput × mean latency ÷ in flight = {ratio:.3f} "
                   f"(outside 1 ± {LITTLE_TOLERANCE:.0%}): time lost in the client or a wrong "
                   "clock")
    lagged = client_lag_tail(record)
    if lagged is not None:
        _leave_out(invalid, LATENCY, lagged)
    if queues is not None:
        _leave_out(invalid, CLIENT_SIDE + PER_CONNECTION,
                   f"serves {queues} client{'s' if queues != 1 else ''} at once by design; "
                   f"{int(connections) - queues} of {int(connections)} connections wait")
    if errors > 0:
        kinds = error_kinds(record)
        why = f"{int(errors)} request errors" + (f" ({kinds})" if kinds else "")
        _leave_out(invalid, CLIENT_SIDE, why)
        rate = _count(derived.get("error_rate"))
        if rate > PER_REQUEST_ERROR_LIMIT:
            _leave_out(invalid, PER_REQUEST,
                       f"{rate:.1%} of requests unanswered (over {PER_REQUEST_ERROR_LIMIT:.0%})")
        if not_held(record):
            _leave_out(invalid, PER_CONNECTION, "connections not held: " + not_held(record))
    # a figure that was never computed is not valid either, but nothing was left out
    unmeasured = frozenset(m for m in JUDGED if m not in invalid and _missing(record, m))
    return Validity(False, saturated, errors > 0, queues, invalid, unmeasured, ratio, broken,
                    lagged is not None)


def client_lag_tail(record: Mapping[str, Any]) -> str | None:
    """Why an open-loop trial's latency tail is the client's own send lag (the swarm's
    ``client.lag_tail.reason``), or None when it is not."""
    client = (record.get("swarm") or {}).get("client") or {}
    if not client.get("lag_is_tail"):
        return None
    return str((client.get("lag_tail") or {}).get("reason") or
               "open loop: the client's own send lag is the latency tail")


def littles_law_ratio(swarm: Mapping[str, Any] | None) -> float | None:
    """Closed loop: throughput × mean latency ÷ (connections × pipeline); None where the swarm
    record cannot say (open loop, no pipeline stated, no requests or no mean latency)."""
    swarm = swarm or {}
    if swarm.get("mode") != "closed" or "pipeline" not in swarm:
        return None
    in_flight = _count(swarm.get("connections")) * _count(swarm.get("pipeline"))
    throughput = _count(swarm.get("throughput_rps"))
    mean_us = _count((swarm.get("latency_us") or {}).get("mean"))
    if not (in_flight and throughput and mean_us):
        return None
    return throughput * mean_us / 1e6 / in_flight


def littles_law(record: Mapping[str, Any]) -> float | None:
    """The trial's Little's law ratio: the runner's, else computed from its swarm record."""
    recorded = (record.get("derived") or {}).get("littles_law_ratio")
    if isinstance(recorded, int | float) and not isinstance(recorded, bool):
        return float(recorded)
    return littles_law_ratio(record.get("swarm"))


def _leave_out(invalid: dict[str, str], metrics: tuple[str, ...], why: str) -> None:
    for metric in metrics:
        invalid.setdefault(metric, why)


def _missing(record: Mapping[str, Any], metric: str) -> bool:
    """Whether the record has no number for ``metric`` (derived, or the server's own)."""
    if metric == "rss_per_held_connection_bytes":
        return False  # computed by the frame from the samples; judged only for errors
    value = (record.get("derived") or {}).get(metric)
    if value is None and metric in ("threads_max", "fds_max", "rss_max"):
        value = (record.get("server") or {}).get(metric)
    return not (isinstance(value, int | float) and not isinstance(value, bool)
                and not math.isnan(value))


def _count(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return 0.0


def not_held(record: Mapping[str, Any]) -> str:
    """The error kinds that mean connections the server never held, as 'kind=n; ...'."""
    errors = (record.get("swarm") or {}).get("errors") or {}
    return "; ".join(f"{kind}={count}" for kind, count in errors.items()
                     if count and _NOT_HELD.match(str(kind)))


def error_kinds(record: Mapping[str, Any]) -> str:
    """The swarm's errors by kind, as 'kind=n; ...' (empty when none)."""
    errors = (record.get("swarm") or {}).get("errors") or {}
    return "; ".join(f"{kind}={count}" for kind, count in errors.items() if count)


def saturation_reasons(record: Mapping[str, Any]) -> str:
    """Why the swarm said it was saturated, joined ('' when it gave no reason)."""
    reasons = ((record.get("swarm") or {}).get("client") or {}).get("reasons") or []
    return "; ".join(map(str, reasons))


def registry_clients_at_once(record: Mapping[str, Any]) -> int | None:
    """How many clients the trial's model serves at once by design: its ``CLIENTS_AT_ONCE``
    (servers/__init__.py), or its ``--threads N`` where the model has such a bound and the
    trial set the option (threadpool: one client per thread). None: no bound, or unknown."""
    bound = _declared(str(record.get("server_model") or record.get("model") or ""))
    if bound is None:
        return None
    args = [str(a) for a in record.get("model_args") or []]
    if "--threads" in args[:-1]:
        try:
            return int(args[args.index("--threads") + 1])
        except ValueError:
            return bound
    return bound


@cache
def _declared(model: str) -> int | None:
    # imported here: the registry imports a model's module only when asked (servers/ never
    # imports bench, so no cycle); a module that cannot be imported declares nothing
    import servers

    try:
        return servers.clients_at_once(model)
    except Exception:  # an unknown or broken model module: no bound known
        return None
