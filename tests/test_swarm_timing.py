"""The swarm's own bookkeeping never stalls its sends.

Against the C ``native`` server, open loop at a rate one worker sustains, two swarms run at
the same time (so that they share whatever else the machine is doing) and differ only in
``--interval``: one with interval boundaries inside the window, one with a single interval.
Boundaries must not show: not in the corrected p99 (the figure a latency sweep rests on), not
in the schedule lag. Before the fix each boundary stopped the sends for milliseconds (folding
samples into HdrHistograms, encoding, resetting), and every request due meanwhile was charged
to the server. The assertions are ratios between the two runs, with a floor for a noisy
2-core machine, not wall-clock figures; a pair that other processes disturbed is run again
(up to three times), which the systematic pause of a boundary would not survive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _helpers_server import ServerProcess, running_server

from clients.config import SwarmConfig
from clients.swarm import run_swarm
from servers import native

pytestmark = pytest.mark.skipif(native.unavailable() is not None,
                                reason=f"native model unavailable: {native.unavailable()}")

RATE = 20_000  # requests/s: one worker sustains several times that
FACTOR = 2.0  # the run with boundaries may be this much worse than the one without...
FLOOR_US = 300.0  # ...plus this (noise on a shared 2-core machine)
SINGLE = 60.0  # an --interval longer than the window: no boundary inside it
ATTEMPTS = 3  # a pair disturbed by other processes is run again; a boundary's pause is in all

Records = tuple[dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server("native") as process:
        yield process


def side_by_side(server: ServerProcess, interval: float, duration: float,
                 rate: float) -> Records:
    """The same open-loop run with ``interval`` and with a single interval, at the same time."""
    records: dict[float, dict[str, Any]] = {}

    def run(seconds: float) -> None:
        records[seconds] = run_swarm(SwarmConfig(
            target=f"{server.host}:{server.port}", connections=16, mode="open", rate=rate,
            duration=duration, warmup=0.3, interval=seconds, timeout=2.0, seed=13))

    threads = [threading.Thread(target=run, args=(seconds,)) for seconds in (interval, SINGLE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60.0)
    with_boundaries, single = records[interval], records[SINGLE]
    for record in (with_boundaries, single):
        assert record["errors"] == {} and record["complete"], record["errors"]
    boundaries = -(-int(duration * 1e9) // int(interval * 1e9))  # as the swarm counts them
    assert len(with_boundaries["intervals"]) == boundaries
    assert len(single["intervals"]) == 1
    return with_boundaries, single


def compare(server: ServerProcess, interval: float, duration: float, rate: float,
            problems: Callable[[dict[str, Any], dict[str, Any]], list[str]]) -> None:
    """Run the pair until ``problems`` finds none (at most ATTEMPTS times); fail with the last
    attempt's problems and how much each run waited for a CPU."""
    found: list[str] = []
    for _ in range(ATTEMPTS):
        ticked, single = side_by_side(server, interval, duration, rate)
        found = [f"throughput {record['throughput_rps']} of {rate}"
                 for record in (ticked, single)
                 if abs(record["throughput_rps"] - rate) > 0.05 * rate]
        found += problems(ticked, single)
        if not found:
            return
    waits = [record["client"]["cpu_wait_percent"] for record in (ticked, single)]
    pytest.fail("; ".join(found) + f" (waiting for a CPU: {waits[0]} and {waits[1]} %)")


def worse(name: str, value: float | None, reference: float | None) -> list[str]:
    """A problem if ``value`` is past FACTOR times ``reference`` plus FLOOR_US."""
    if value is None or reference is None or value <= FACTOR * reference + FLOOR_US:
        return []
    return [f"{name}: {value:,.0f} µs with boundaries, {reference:,.0f} without"]


def test_default_interval_leaves_corrected_p99_alone(server: ServerProcess) -> None:
    """The default 1 s interval (two boundaries in the window): corrected p99 and p99.9 as
    with a single interval."""

    def problems(ticked: dict[str, Any], single: dict[str, Any]) -> list[str]:
        return [problem for name in ("p99", "p99_9") for problem in worse(
            f"corrected {name}", ticked["latency_us"][name], single["latency_us"][name])]

    compare(server, interval=1.0, duration=2.5, rate=RATE, problems=problems)


def test_lag_does_not_jump_at_interval_boundaries(server: ServerProcess) -> None:
    """A boundary every 20 ms: the schedule lag (and so the corrected latency) is what it is
    without any, in its p99 and in a typical interval's largest lag (each interval but the
    first begins at a boundary)."""

    def problems(ticked: dict[str, Any], single: dict[str, Any]) -> list[str]:
        found = [problem for figure in ("schedule_lag_us", "latency_us") for problem in worse(
            f"{figure} p99", ticked[figure]["p99"], single[figure]["p99"])]
        largest = sorted(item["client_lag_max_us"] or 0.0 for item in ticked["intervals"])
        typical = largest[len(largest) // 2]  # boundary included, in all but the first
        return found + worse("an interval's largest lag", typical,
                             single["schedule_lag_us"]["p99_9"])

    compare(server, interval=0.02, duration=1.5, rate=RATE / 2, problems=problems)
