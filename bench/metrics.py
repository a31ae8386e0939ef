"""Every figure a trial yields, declared once: its name, direction, unit, resolution, the
validity rules that apply to it and how the report names it.

The runner derives these figures (``bench/run/trial.py`` ``derive``, and the workloads'
``bench/run/workloads.py``), the frames keep them as columns (``bench/analysis/frames.py``),
validity judges them by their ``side`` (``bench/analysis/validity.py``: which conditions leave
them out), the verdicts and the scorecard name them with ``words`` and ``noun``, and
``fmt`` writes them. Adding a figure is one entry here and the code that computes it.

``side`` is what the figure describes, which decides what can corrupt it:
- ``throughput`` and ``latency``: what the load generator measured (a saturated client, a
  broken Little's law, errors, an unsteady or starved window leave them out);
- ``per_request``: server cost divided by the requests (an unsteady window, errors past 1 %);
- ``per_connection``: server memory divided by connections (connections not held);
- ``server``: what was sampled from the server alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One figure of a trial."""

    name: str  # the record's derived key and the frames' column
    side: str  # throughput, latency, per_request, per_connection, server (module docstring)
    unit: str  # "req/s", "µs", "bytes", "%", "count", "connections/s", "share"
    better: str | None = None  # "higher", "lower", or None: shown, never ranked
    resolution: str = ""  # what limits its precision
    words: str = ""  # a verdict's metric, in words
    noun: str = ""  # in a sentence ("asyncio costs 1.7x epoll's CPU per request")
    cell: bool = False  # counted as a (case, model, metric) cell in "how sure"
    summary: bool = False  # in the per-case tables' aggregate


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("throughput_rps", "throughput", "req/s", "higher",
           "replies counted over the swarm's window", "median throughput (req/s)", "throughput",
           cell=True, summary=True),
    Metric("connections_per_s", "throughput", "connections/s", "higher",
           "connections completed over the window", noun="connections per second"),
    Metric("p50_us", "latency", "µs", "lower", "HdrHistogram, 3 significant digits",
           cell=True, summary=True),
    Metric("p90_us", "latency", "µs", "lower", "HdrHistogram, 3 significant digits",
           summary=True),
    Metric("p99_us", "latency", "µs", "lower",
           "ranked only with 100 samples beyond it (10,000 requests)", "median p99 (µs)", "p99",
           cell=True, summary=True),
    Metric("p99_9_us", "latency", "µs", "lower",
           "ranked only with 100 samples beyond it (100,000 requests)", cell=True,
           summary=True),
    Metric("max_us", "latency", "µs", "lower", "one sample", summary=True),
    Metric("mean_us", "latency", "µs", "lower", "HdrHistogram buckets"),
    Metric("reference_kind_p99_us", "latency", "µs", "lower",
           "ranked only with 100 samples beyond it", noun="cheap requests' p99"),
    Metric("cpu_us_per_request", "per_request", "µs", "lower",
           "the process CPU clock at the window's edges (ns), over the requests",
           "median server CPU per request (µs)", "CPU per request", cell=True, summary=True),
    Metric("ctx_switches_per_request", "per_request", "count", "lower",
           "psutil's context-switch counts over the window", cell=True, summary=True),
    Metric("cpu_us_per_connection", "per_request", "µs", "lower",
           "the process CPU clock over the connections completed",
           noun="CPU per connection"),
    Metric("rss_per_connection_bytes", "per_connection", "bytes", "lower",
           "a page (4,096 bytes) over the connections held",
           "median RSS slope per connection held (bytes)", "RSS per connection", cell=True,
           summary=True),
    Metric("server_cpu_percent", "server", "%", None, "psutil ticks (10 ms)", summary=True),
    Metric("threads_max", "server", "count", "lower", "psutil samples every 100 ms", cell=True,
           summary=True),
    Metric("fds_max", "server", "count", None, "psutil samples every 100 ms", cell=True,
           summary=True),
    Metric("rss_max", "server", "bytes", "lower", "a page; psutil samples every 100 ms"),
    Metric("rss_per_held_connection_bytes", "server", "bytes", "lower",
           "a page over the connections held", "median RSS per connection held (bytes)",
           "RSS per connection held"),
    Metric("error_rate", "server", "share", "lower", "requests", summary=True),
)}
# a figure the report ranks that no single trial has: the highest rate within the SLO
RATE_WITHIN_SLO = Metric("rate_within_slo", "throughput", "req/s", "higher",
                         "interpolated between the ladder's points",
                         "highest rate within SLO (req/s)", "rate within the SLO")


def names(side: str) -> tuple[str, ...]:
    """The metrics of one side, in the registry's order."""
    return tuple(m.name for m in METRICS.values() if m.side == side)


def get(name: str) -> Metric | None:
    """A metric by name (the sweep's rate within the SLO included); None if unknown."""
    return RATE_WITHIN_SLO if name == RATE_WITHIN_SLO.name else METRICS.get(name)


def words(name: str) -> str:
    """How a verdict names the metric (its name where it declares no words)."""
    metric = get(name)
    return (metric.words if metric and metric.words else name)


def noun(name: str) -> str:
    """How a sentence names the metric."""
    metric = get(name)
    return (metric.noun if metric and metric.noun else name)


def fmt(value: float, name: str) -> str:
    """A figure in its unit, for a sentence: '12.3 µs', '4.5 ms', '33 KiB', '52,300 req/s'."""
    if value != value:
        return "—"
    metric = get(name)
    unit = metric.unit if metric else "req/s"
    if unit == "bytes":
        for limit, suffix in ((1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= limit:
                return f"{value / limit:.3g} {suffix}"
        return f"{value:.0f} B"
    if unit == "µs":
        return f"{value / 1000:.3g} ms" if value >= 1000 else f"{value:.3g} µs"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.0f} {unit}"
