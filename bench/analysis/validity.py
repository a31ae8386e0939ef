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
- the load never got steady (``swarm.steady.reached`` false, clients/_steady.py): the window
  opened at the warm-up cap before every connection was answered or throughput settled; its
  client-side, per-request and per-connection figures describe a transient (or a partial set
  of connections) and are left out, with what the model did ("answered 335 of 1,000");
- starved connections: a busy connection with no reply in the window means the server did not
  serve everyone; throughput, latency and per-connection figures are left out;
- open loop, the achieved rate more than ``RATE_TOLERANCE`` off the offered one: it was not the
  load asked for; throughput and latency are left out;
- too few samples behind a percentile: a percentile with fewer than ``TAIL_SAMPLES`` samples
  beyond it (p99 of fewer than 10,000 requests) is shown with its count but not ranked;
- the client's own send lag (open loop) judged against the case's SLO, the same bound for
  every model at the same rate: a rule that looks at the server's own tail would keep exactly
  the trials whose server was slow.

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

from bench import metrics

MARK_SATURATED = "†"
MARK_ERRORS = "‡"
MARK_QUEUES = "§"
MARK_LITTLE = "¶"
MARK_LAG = "°"
MARK_FAILED = "✗"
MARK_UNSTEADY = "~"
MARK_STARVED = "ø"
MARK_RATE = "≠"
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
    MARK_LAG: "open loop: the client's own send lag p99 passed a quarter of the SLO, so its "
              "latency is left out; its throughput and server-side figures stand",
    MARK_FAILED: "the trial failed (no figures)",
    MARK_UNSTEADY: "the load never got steady (connections not all answered, or throughput "
                   "not settled, by the warm-up cap): its client-side, per-request and "
                   "per-connection figures are left out",
    MARK_STARVED: "connections starved in the window (no reply): the server did not serve "
                  "everyone, so throughput, latency and per-connection figures are left out",
    MARK_RATE: "open loop: the achieved rate was more than 2 % off the offered one, so its "
               "throughput and latency are left out",
}
# every reason a figure is left out, by kind: the terminal, the report and answer.json count
# them under these names
REASON_KINDS = ("failed", "saturated", "errors", "queues", "little", "lag", "unsteady",
                "starved", "rate", "samples")

# the judged figures by what they describe (bench/metrics.py declares each one's side)
THROUGHPUT = metrics.names("throughput")
LATENCY = metrics.names("latency")
CLIENT_SIDE = THROUGHPUT + LATENCY  # what the load generator measured
PER_REQUEST = metrics.names("per_request")  # server cost over the requests
PER_CONNECTION = metrics.names("per_connection")  # server memory over the connections held
SERVER_SIDE = metrics.names("server")  # sampled from the server alone
JUDGED = CLIENT_SIDE + PER_REQUEST + PER_CONNECTION + SERVER_SIDE
# the (case, model, metric) cells counted as valid or not in the report and answer.json
CELL_METRICS = tuple(m.name for m in metrics.METRICS.values() if m.cell)
PER_REQUEST_ERROR_LIMIT = 0.01
LITTLE_TOLERANCE = 0.05  # |throughput × mean latency ÷ in flight − 1| allowed
RATE_TOLERANCE = 0.02  # open loop: |achieved ÷ offered − 1| allowed
TAIL_SAMPLES = 100  # samples beyond a percentile for it to be ranked
# percentile figure -> the share of samples beyond it
TAIL_SHARES = {"p99_us": 0.01, "p99_9_us": 0.001, "reference_kind_p99_us": 0.01}
LAG_SLO_SHARE = 0.25  # open loop: the client's own lag p99 may reach this share of the SLO
REASONS_JOIN = " | "  # between a trial's reasons (a reason may hold '; ', e.g. error kinds)
# error kinds that mean a connection was never held by the server (clients/worker/conn.py)
_NOT_HELD = re.compile(r"^(over_capacity|connect_.*)$")

COLUMNS = ["failed", "client_saturated", "has_errors", "queues_at", "littles_law_ratio",
           "littles_law_broken", "client_lagged", "unsteady", "starved", "rate_off",
           "throughput_bound", "excluded", "flags", "exclusion_reason", "invalid_figures",
           "reason_kinds", *[f"ok_{m}" for m in JUDGED]]


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
    client_lagged: bool = False  # open loop: the client's own lag p99 passed its share of the SLO
    unsteady: bool = False  # the load never got steady before the window
    starved: int = 0  # busy connections with no reply in the window
    rate_off: bool = False  # open loop: achieved rate more than RATE_TOLERANCE off
    kinds: frozenset[str] = frozenset()  # REASON_KINDS that left something out
    # percentiles shown with their count but not ranked (too few samples beyond them): the
    # trial is not flagged for it
    few_samples: Mapping[str, str] = field(default_factory=dict)

    @property
    def throughput_bound(self) -> bool:
        """Its throughput stands as a lower bound: left out for client saturation alone (the
        server was at least this fast), no other rule broken."""
        return self.client_saturated and self.kinds <= {"saturated", "samples", "lag"}

    def valid(self, metric: str) -> bool:
        """Whether ``metric`` of this trial may stand for its server."""
        return (metric not in self.invalid and metric not in self.unmeasured
                and metric not in self.few_samples)

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
                                              (MARK_LAG, self.client_lagged),
                                              (MARK_UNSTEADY, self.unsteady),
                                              (MARK_STARVED, self.starved > 0),
                                              (MARK_RATE, self.rate_off)) if on)

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
                "client_lagged": self.client_lagged, "unsteady": self.unsteady,
                "starved": self.starved, "rate_off": self.rate_off,
                "throughput_bound": self.throughput_bound,
                "excluded": self.excluded, "flags": self.flags,
                "exclusion_reason": self.reason,
                "invalid_figures": " ".join(m for m in JUDGED if m in self.invalid),
                "reason_kinds": " ".join(k for k in REASON_KINDS if k in self.kinds),
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
        return Validity(True, False, False, None, {m: why for m in JUDGED},
                        kinds=frozenset({"failed"}))
    derived = record.get("derived") or {}
    invalid: dict[str, str] = {}
    kinds: set[str] = set()

    def leave_out(kind: str, metrics: tuple[str, ...], why: str) -> None:
        kinds.add(kind)
        _leave_out(invalid, metrics, why)

    saturated = bool(derived.get("client_saturated"))
    errors = _count(derived.get("errors"))
    bound = (clients_at_once or registry_clients_at_once)(record)
    connections = _count(record.get("connections"))
    queues = bound if bound is not None and connections > bound else None
    unsteady = unsteady_reason(record)
    if unsteady is not None:
        leave_out("unsteady", CLIENT_SIDE + PER_REQUEST + PER_CONNECTION,
                  f"not steady: {unsteady}")
    if saturated:
        why = saturation_reasons(record)
        leave_out("saturated", CLIENT_SIDE, "client saturated" + (f" ({why})" if why else ""))
    ratio = littles_law(record)
    broken = ratio is not None and abs(ratio - 1) > LITTLE_TOLERANCE
    if broken:
        leave_out("little", CLIENT_SIDE, littles_law_words(ratio))
    starved = starved_connections(record) if queues is None else 0
    if starved:
        leave_out("starved", CLIENT_SIDE + PER_CONNECTION,
                  f"{starved:,} of {int(connections):,} connections had no reply in the window")
    off = rate_offset(record)
    if off is not None:
        leave_out("rate", CLIENT_SIDE,
                  f"achieved rate {off:+.1%} off the offered one (over ±{RATE_TOLERANCE:.0%})")
    lagged = client_lag_over_slo(record)
    if lagged is not None:
        leave_out("lag", LATENCY, lagged)
    if queues is not None:
        leave_out("queues", CLIENT_SIDE + PER_CONNECTION,
                  f"serves {queues} client{'s' if queues != 1 else ''} at once by design; "
                  f"{int(connections) - queues} of {int(connections)} connections wait")
    if errors > 0:
        errs = error_kinds(record)
        leave_out("errors", CLIENT_SIDE,
                  f"{int(errors)} request errors" + (f" ({errs})" if errs else ""))
        rate = _count(derived.get("error_rate"))
        if rate > PER_REQUEST_ERROR_LIMIT:
            leave_out("errors", PER_REQUEST,
                      f"{rate:.1%} of requests unanswered (over {PER_REQUEST_ERROR_LIMIT:.0%})")
        if not_held(record):
            leave_out("errors", PER_CONNECTION, "connections not held: " + not_held(record))
    few = few_samples(record, invalid)
    if set(few) - {"p99_9_us"}:  # p99.9 needs a tail run of 100,000 requests: not counted
        kinds.add("samples")
    # a figure that was never computed is not valid either, but nothing was left out
    unmeasured = frozenset(m for m in JUDGED if m not in invalid and _missing(record, m))
    return Validity(False, saturated, errors > 0, queues, invalid, unmeasured, ratio, broken,
                    lagged is not None, unsteady is not None, starved, off is not None,
                    frozenset(kinds), few)


def few_samples(record: Mapping[str, Any], invalid: Mapping[str, str]) -> dict[str, str]:
    """Percentiles (not left out otherwise) with fewer than TAIL_SAMPLES samples beyond them:
    metric -> their count, in words."""
    swarm = record.get("swarm") or {}
    requests = _count(swarm.get("requests") or (record.get("derived") or {}).get("requests"))
    return {metric: f"{requests * share:.0f} samples beyond it ({int(requests):,} requests; "
                    f"{TAIL_SAMPLES} needed to rank it)"
            for metric, share in TAIL_SHARES.items()
            if metric not in invalid and not _missing(record, metric)
            and requests * share < TAIL_SAMPLES}


def reason_counts(frame: Any) -> dict[str, int]:
    """Trials per reason kind (REASON_KINDS, every kind listed) of a summary frame."""
    kinds = frame["reason_kinds"].astype(str).str.split() if len(frame) else []
    return {kind: int(sum(kind in row for row in kinds)) for kind in REASON_KINDS}


def littles_law_words(ratio: float) -> str:
    """Why a Little's law ratio outside 1 ± LITTLE_TOLERANCE leaves throughput and latency
    out, in the direction it broke."""
    where = (f"Little's law broken: throughput × mean latency ÷ in flight = {ratio:.3f} "
             f"(outside 1 ± {LITTLE_TOLERANCE:.0%}): ")
    if ratio < 1:
        return where + ("fewer requests were in flight than the connections hold: "
                        "connections not served")
    return where + "a stall inside or just before the window"


def unsteady_reason(record: Mapping[str, Any]) -> str | None:
    """Why the swarm opened the window without steady state (None: steady, or not gated)."""
    steady = (record.get("swarm") or {}).get("steady") or {}
    if not steady.get("checked") or steady.get("reached"):
        return None
    return str(steady.get("reason") or "the load never got steady")


def starved_connections(record: Mapping[str, Any]) -> int:
    """Busy connections without a reply in the window, where the window had enough requests
    for each to have one (churn replaces connections: not judged)."""
    swarm = record.get("swarm") or {}
    if swarm.get("churn"):
        return 0
    fairness = swarm.get("fairness") or {}
    starved = int(_count(fairness.get("starved")))
    if _count(swarm.get("requests")) < 2 * _count(swarm.get("connections")):
        return 0
    return starved


def rate_offset(record: Mapping[str, Any]) -> float | None:
    """Open loop: achieved ÷ offered − 1 when outside ± RATE_TOLERANCE, else None."""
    swarm = record.get("swarm") or {}
    offered, achieved = _count(swarm.get("rate")), _count(swarm.get("throughput_rps"))
    if swarm.get("mode") != "open" or not offered or not achieved:
        return None
    offset = achieved / offered - 1
    return offset if abs(offset) > RATE_TOLERANCE else None


def client_lag_over_slo(record: Mapping[str, Any]) -> str | None:
    """Open loop: why the client's own send lag disqualifies the latency (its p99 over
    LAG_SLO_SHARE of the case's SLO: one bound for every model at the rate), else None."""
    client = (record.get("swarm") or {}).get("client") or {}
    lag = (client.get("lag_us") or {}).get("p99")
    slo_ms = _count(record.get("slo_p99_ms"))
    if lag is None or not slo_ms:
        return None
    limit = LAG_SLO_SHARE * slo_ms * 1000
    if lag <= limit:
        return None
    return (f"open loop: the client's own send lag p99 {lag:,.0f} µs is over "
            f"{LAG_SLO_SHARE:.0%} of the {slo_ms:g} ms SLO: the tail would be the client's")


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
