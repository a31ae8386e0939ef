"""The swarm's record: the workers' partial records merged into one (``build_record``).

HdrHistograms are merged through ``encode``/``decode_and_add``; counts, intervals and errors are
summed; the client's own saturation (CPU, open-loop lateness) is judged here. ``RECORD_KEYS``
lists the record's keys; ``exit_status`` turns a record into the command's exit status.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from clients._measure import mean_value, new_histogram
from clients.config import SLOWLORIS_FIRST_BYTES, SwarmConfig
from clients.plan import Timeline

RECORD_VERSION = 1
CPU_SATURATED = 90.0  # a worker's core at or above this percent: the client is the bottleneck
LAG_SATURATED_US = 1000.0  # open loop: the client's own mean lateness above this is saturation
# open loop: the client's own lateness at p99 or p99.9 at least this share of the corrected
# latency's means that tail is the client's pauses, not the server (``client.lag_is_tail``)
LAG_TAIL_SHARE = 0.5
LAG_TAIL_SAMPLES = 10  # a percentile is judged only with this many requests beyond it
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}
# exit statuses of ``python -m clients swarm`` (and ``exit_status``)
EXIT_OK = 0  # ran to the end, no errors
EXIT_ERRORS = 1  # ran, but with errors, cut short or interrupted: figures are partial
EXIT_CANNOT_RUN = 2  # bad arguments, unreachable target, workers not started, no connection

RECORD_KEYS = (
    "version", "tool", "started_at", "target", "mode", "connections",
    "connections_established", "workers", "pipeline", "rate", "arrivals", "mix", "warmup_s",
    "duration_planned_s", "duration_s", "timeout_s", "verify", "interval_s", "requests",
    "throughput_rps", "errors", "errors_total", "error_rate", "latency_us",
    "latency_uncorrected_us", "latency_corrected", "connect_us", "schedule_lag_us",
    "histogram", "histogram_uncorrected", "histogram_unit", "intervals", "fairness",
    "per_connection", "client", "totals", "window", "complete", "stopped",
    "idle_connections", "idle", "churn", "slowloris", "latency_by_kind", "protocol", "steady",
)




class Outcome(Protocol):
    """What ``build_record`` reads of a run (``clients.swarm``'s, or one across hosts)."""

    results: dict[int, dict[str, Any]]  # worker index -> its partial record
    failures: dict[int, str]  # worker index -> why it gave none
    interrupted: bool
    timeline: Timeline | None
    steady: dict[str, Any] | None  # the steady-state gate's decision, if there was one


def _merge(encoded: list[str | None]) -> HdrHistogram:
    histogram = new_histogram()
    for item in encoded:
        if item:
            histogram.decode_and_add(item)
    return histogram


def latency_summary(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50 … p99.99, max and mean in microseconds (None without samples)."""
    if histogram.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES), "max": None, "mean": None}
    summary: dict[str, float | None] = {
        name: float(histogram.get_value_at_percentile(pct)) for name, pct in PERCENTILES.items()}
    summary["max"] = float(histogram.get_max_value())
    summary["mean"] = round(mean_value(histogram), 1)  # hdrh's get_mean_value, vectorised
    return summary


def jain_index(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when every value is equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return None
    return total * total / (len(values) * squares)


def _fairness(per_connection: list[int], duration: float) -> dict[str, Any]:
    rates = [count / duration for count in per_connection] if duration > 0 else []
    index = jain_index(rates)
    return {
        "jain": round(index, 4) if index is not None else None,
        "min_rps": round(min(rates), 1) if rates else None,
        "max_rps": round(max(rates), 1) if rates else None,
        "mean_rps": round(sum(rates) / len(rates), 1) if rates else None,
        "connections": len(per_connection),
        "starved": sum(1 for count in per_connection if count == 0),
    }


def _intervals(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_index: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        for item in result["intervals"]:
            by_index.setdefault(item["index"], []).append(item)
    merged = []
    for index in sorted(by_index):
        items = by_index[index]
        histogram = _merge([item["histogram"] for item in items])
        requests = sum(item["requests"] for item in items)
        seconds = max(item["duration_ns"] for item in items) / 1e9
        lag_count = sum(item["lag_count"] for item in items)
        lag = _merge([item.get("lag_histogram") for item in items])
        has = histogram.get_total_count() > 0
        merged.append({
            "t_s": round(sum(merged_item["duration_s"] for merged_item in merged), 3),
            "duration_s": round(seconds, 3),
            "requests": requests,
            "throughput_rps": round(requests / seconds, 1) if seconds > 0 else None,
            "p50_us": float(histogram.get_value_at_percentile(50)) if has else None,
            "p99_us": float(histogram.get_value_at_percentile(99)) if has else None,
            "errors": sum(item["errors"] for item in items),
            "client_lag_mean_us": round(sum(item["lag_sum_ns"] for item in items)
                                        / lag_count / 1000, 1) if lag_count else None,
            "client_lag_max_us": round(max(item["lag_max_ns"] for item in items) / 1000, 1)
            if lag_count else None,
            "client_lag_p99_us": float(lag.get_value_at_percentile(99))
            if lag.get_total_count() else None,
        })
    return merged


def _client_lag(intervals: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Open loop: how late the client itself sent requests it had a free connection for.

    Returns the summary and, if the lateness shows the client cannot keep the schedule (mean
    over LAG_SATURATED_US, or growing: the last half of the intervals more than twice the
    first half plus half that threshold), the reason to call it saturated.
    """
    lags = [item["client_lag_mean_us"] for item in intervals
            if item["client_lag_mean_us"] is not None]
    maxima = [item["client_lag_max_us"] for item in intervals
              if item["client_lag_max_us"] is not None]
    if not lags:
        return {"mean": None, "max": None, "first_half_mean": None, "last_half_mean": None}, None
    half = max(1, len(lags) // 2)
    first = sum(lags[:half]) / half
    last = sum(lags[-half:]) / half
    mean = sum(lags) / len(lags)
    summary = {"mean": round(mean, 1), "max": max(maxima), "first_half_mean": round(first, 1),
               "last_half_mean": round(last, 1)}
    if mean > LAG_SATURATED_US:
        return summary, (f"open loop: requests leave {mean:,.0f} µs late on average (over "
                         f"{LAG_SATURATED_US:,.0f} µs): the client cannot keep the schedule")
    if len(lags) >= 2 and last > 2 * first + LAG_SATURATED_US / 2:
        return summary, (f"open loop: the client's lateness grows from {first:,.0f} to "
                         f"{last:,.0f} µs: it cannot keep the rate")
    return summary, None


def lag_tail(latency: dict[str, float | None], own_lag: dict[str, float | None],
             requests: int) -> dict[str, Any]:
    """Open loop: is the corrected tail the client's own lateness? ``flagged`` when the lag's
    p99 or p99.9 is at least LAG_TAIL_SHARE of the corrected latency's (each judged only over
    enough ``requests``: p99.9 of 4,000 is four samples); the figures, and why."""
    figures: dict[str, Any] = {"flagged": False, "threshold_share": LAG_TAIL_SHARE,
                               "requests": requests}
    reasons = []
    for name, label, beyond in (("p99", "p99", 0.01), ("p99_9", "p99.9", 0.001)):
        lag, total = own_lag.get(name), latency.get(name)
        share = round(lag / total, 3) if lag is not None and total else None
        figures.update({f"lag_{name}_us": lag, f"latency_{name}_us": total,
                        f"share_{name}": share})
        if share is not None and share >= LAG_TAIL_SHARE and \
                requests * beyond >= LAG_TAIL_SAMPLES:
            reasons.append(f"{label} {lag:,.0f} of {total:,.0f} µs ({share:.0%})")
    if reasons:
        figures["flagged"] = True
        figures["reason"] = ("open loop: the client's own send lateness is the latency tail: "
                             + ", ".join(reasons) + ": that share is the client's pauses, not "
                             "the server's latency")
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _cpu_reasons(cpu: list[float | None], waits: list[float | None]) -> list[str]:
    """Why a worker's core counts as saturated: busy >= 90% of the window, or busy plus
    runnable-but-waiting-for-a-CPU >= 90% (an oversubscribed machine starves the client)."""
    reasons = []
    for i, (busy, wait) in enumerate(zip(cpu, waits, strict=True)):
        if busy is None:
            continue
        if busy >= CPU_SATURATED:
            reasons.append(f"worker {i} at {busy:.0f}% CPU")
        elif wait is not None and busy + wait >= CPU_SATURATED:
            reasons.append(f"worker {i} busy {busy:.0f}% and waiting for a CPU {wait:.0f}% of "
                           f"the window: its core is oversubscribed")
    return reasons


def build_record(config: SwarmConfig, run: Outcome, started_at: str) -> dict[str, Any]:
    """Merge the workers' partial records into the run's record."""
    results = [run.results[i] for i in sorted(run.results)]
    timeline = run.timeline
    starts = [r["window_start_ns"] for r in results if r["window_start_ns"] is not None]
    ends = [r["window_end_ns"] for r in results if r["window_end_ns"] is not None]
    duration = (max(ends) - min(starts)) / 1e9 if starts and ends else 0.0
    per_connection = [count for r in results for count in r["per_connection"]]
    requests = sum(r["requests"] for r in results)
    errors = _errors(results, run.failures)
    errors_total = sum(errors.values())
    open_loop = config.mode == "open"
    histogram = _merge([r["histogram"] for r in results])
    uncorrected = _merge([r["histogram_uncorrected"] for r in results]) if open_loop else None
    lag = _merge([r["histogram_lag"] for r in results]) if open_loop else None
    own_lag = _merge([r.get("histogram_own_lag") for r in results]) if open_loop else None
    intervals = _intervals(results)
    latency = latency_summary(histogram)
    stopped = _stopped(run, results)
    established = sum(r["established"] for r in results)
    idle = _idle(config, results)
    slowloris = _slowloris(config, results)
    answered = requests + sum(r["error_responses"] for r in results)
    return {
        "version": RECORD_VERSION,
        "tool": "concbench clients.swarm",
        "started_at": started_at,
        "target": config.target,
        "mode": config.mode,
        "connections": config.connections,
        "connections_established": established,
        "workers": config.workers,
        "pipeline": config.pipeline,
        "rate": config.rate if open_loop else None,
        "arrivals": config.arrivals if open_loop else None,
        "protocol": config.protocol,
        "mix": config.wire.format_mix(config.wire.parse_mix(config.mix)),
        "warmup_s": config.warmup,
        "duration_planned_s": config.duration,
        "duration_s": round(duration, 4),
        "timeout_s": config.timeout,
        "verify": config.verify,
        "interval_s": config.interval,
        "requests": requests,
        "throughput_rps": round(requests / duration, 1) if duration > 0 else 0.0,
        "errors": errors,
        "errors_total": errors_total,
        "error_rate": round(errors_total / (answered + errors_total), 6)
        if answered + errors_total else None,
        "latency_us": latency,
        "latency_uncorrected_us": latency_summary(uncorrected) if uncorrected else latency,
        "latency_corrected": open_loop,
        "connect_us": {**latency_summary(_merge([r["connect_histogram"] for r in results])),
                       "count": established + idle["established"]
                       + (slowloris["established"] if slowloris else 0)},
        "schedule_lag_us": latency_summary(lag) if lag else None,
        "histogram": histogram.encode().decode("ascii"),
        "histogram_uncorrected": uncorrected.encode().decode("ascii") if uncorrected else None,
        "histogram_unit": "us",
        "intervals": intervals,
        "fairness": _fairness(per_connection, duration),
        "per_connection": per_connection,
        "client": _client(results, intervals, latency, own_lag, requests, run.failures),
        "totals": {
            "sent": sum(r["sent_total"] for r in results),
            "answered_ok": sum(r["ok_total"] for r in results),
            "answered_error": sum(r["error_responses"] for r in results),
            "lost_in_flight": sum(r["lost"] for r in results),
        },
        "window": _window(timeline, starts, ends),
        "complete": stopped is None and not run.failures and bool(ends)
        and (timeline is None or max(ends) >= timeline.end_ns),
        "stopped": stopped,
        "idle_connections": config.idle_connections,
        "idle": idle,
        "churn": _churn(config, results, duration),
        "slowloris": slowloris,
        "latency_by_kind": _by_kind(config, results),
        "steady": run.steady or {"checked": False},
    }


def _errors(results: list[dict[str, Any]], failures: dict[int, str]) -> dict[str, int]:
    """Errors by kind over the workers; a worker that gave no record is one more."""
    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    if failures:
        errors["worker_failed"] = len(failures)
    return errors


def _stopped(run: Outcome, results: list[dict[str, Any]]) -> str | None:
    """Why the run ended before its timeline did (None: it did not)."""
    stopped = "interrupted" if run.interrupted else next(
        (r["stopped"] for r in results if r["stopped"]), None)
    if run.failures and stopped is None:
        stopped = "worker failed"
    return stopped


def _client(results: list[dict[str, Any]], intervals: list[dict[str, Any]],
            latency: dict[str, float | None], own_lag: HdrHistogram | None, requests: int,
            failures: dict[int, str]) -> dict[str, Any]:
    """The client's own figures: each worker's CPU, whether the client was the bottleneck and
    why, its CPU per reply, and in open loop its own lateness (and whether that is the tail)."""
    cpu = [round(r["cpu"].get("percent", 0.0), 1) if r["cpu"] else None for r in results]
    waits = [_round(r["cpu"].get("wait_percent")) if r["cpu"] else None for r in results]
    spins = [_round(r["cpu"].get("spin_percent")) if r["cpu"] else None for r in results]
    reasons = _cpu_reasons(cpu, waits)
    lag_summary, lag_reason = _client_lag(intervals)
    if lag_reason:
        reasons.append(lag_reason)
    tail = lag_tail(latency, latency_summary(own_lag), min(
        requests, own_lag.get_total_count())) if own_lag is not None else None
    cpu_seconds = sum(r["cpu"]["user_s"] + r["cpu"]["system_s"] - r["cpu"].get("spin_s", 0.0)
                      for r in results if r["cpu"])  # spinning until a send is due is no work
    return {"cpu_percent": cpu, "cpu_wait_percent": waits, "cpu_spin_percent": spins,
            "saturated": bool(reasons), "reasons": reasons,
            "cpu_threshold_percent": CPU_SATURATED,
            "cpu_us_per_reply": round(cpu_seconds / requests * 1e6, 2) if requests else None,
            "lag_us": {**lag_summary, **latency_summary(own_lag)} if own_lag else None,
            "lag_is_tail": bool(tail and tail["flagged"]), "lag_tail": tail,
            "worker_failures": {str(i): why for i, why in sorted(failures.items())}}


def _churn(config: SwarmConfig, results: list[dict[str, Any]], duration: float
           ) -> dict[str, Any] | None:
    """Churn: connections that made their requests and closed in the window, per second, and
    the window's connect and cycle (connect to last reply) times; None without churn."""
    if not config.requests_per_connection:
        return None
    parts = [r["churn"] for r in results if r.get("churn")]
    completed = sum(part["cycles"] for part in parts)
    connect = _merge([part["connect_histogram"] for part in parts])
    cycle = _merge([part["cycle_histogram"] for part in parts])
    return {"requests_per_connection": config.requests_per_connection,
            "connections_completed": completed,
            "connections_per_s": round(completed / duration, 1) if duration > 0 else 0.0,
            "connect_us": {**latency_summary(connect), "count": connect.get_total_count()},
            "cycle_us": latency_summary(cycle),
            "connect_histogram": connect.encode().decode("ascii"),
            "cycle_histogram": cycle.encode().decode("ascii")}


def _slowloris(config: SwarmConfig, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The slow connections: how many were held, still open when the window ended, the
    bytes they sent and their errors (kept out of ``errors``); None without any."""
    if not config.slowloris:
        return None
    parts = [r.get("slowloris") or {} for r in results]
    held = _held(parts)
    return {"connections": config.slowloris, "interval_s": config.slowloris_interval,
            "first_bytes": SLOWLORIS_FIRST_BYTES, "established": held["established"],
            "alive_at_end": held["alive_at_end"],
            "bytes_sent": sum(part.get("bytes_sent", 0) for part in parts),
            "errors": held["errors"], "errors_total": sum(held["errors"].values())}


def _by_kind(config: SwarmConfig, results: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A mix of several kinds: each kind's replies and latency (corrected in open loop), in
    the mix's order; None for a uniform mix."""
    wire = config.wire
    entries = wire.parse_mix(config.mix)
    if len(entries) < 2:
        return None
    encoded = [r.get("histograms_by_kind") or [] for r in results]
    kinds = []
    for index, entry in enumerate(entries):
        histogram = _merge([part[index] for part in encoded if index < len(part)])
        kinds.append({"kind": wire.describe(entry), "weight": entry.weight,
                      "requests": histogram.get_total_count(),
                      "latency_us": latency_summary(histogram),
                      "histogram": histogram.encode().decode("ascii")})
    return kinds


def _idle(config: SwarmConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The idle connections: how many were held, still open when the window ended, and the
    errors among them (also counted in ``errors``)."""
    return {"connections": config.idle_connections,
            **_held([r.get("idle") or {} for r in results])}


def _held(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Idle or slow connections over the workers: established, still open when the window
    ended (None if a worker could not say), and their errors by kind."""
    alive = [part.get("alive_at_end") for part in parts]
    errors: dict[str, int] = {}
    for part in parts:
        for kind, count in (part.get("errors") or {}).items():
            errors[kind] = errors.get(kind, 0) + count
    return {"established": sum(part.get("established", 0) for part in parts),
            "answered": sum(part.get("answered", 0) for part in parts),
            "alive_at_end": sum(alive) if alive and None not in alive else None,
            "errors": errors}


def _window(timeline: Timeline | None, starts: list[int], ends: list[int]) -> dict[str, Any]:
    """The measured window on the monotonic clock and as wall-clock time (Unix seconds)."""
    if timeline is None or not starts or not ends:
        return {"monotonic_start_s": None, "monotonic_end_s": None,
                "unix_start_s": None, "unix_end_s": None}
    offset = time.time() - time.monotonic()
    start, end = min(starts) / 1e9, max(ends) / 1e9
    return {"monotonic_start_s": round(start, 6), "monotonic_end_s": round(end, 6),
            "unix_start_s": round(start + offset, 6), "unix_end_s": round(end + offset, 6)}


def exit_status(record: dict[str, Any]) -> int:
    """0: complete without errors; 1: ran, with errors or cut short; 2: nothing could run."""
    if record["connections_established"] == 0:
        return EXIT_CANNOT_RUN
    if record["errors_total"] or not record["complete"]:
        return EXIT_ERRORS
    return EXIT_OK


