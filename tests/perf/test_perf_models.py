"""pytest-benchmark: a fixed-work closed-loop ECHO load per model (not part of ``make test``).

Run ``make bench-pytest`` (or ``pytest tests/perf --benchmark-autosave``) to keep a history in
``.benchmarks/``, and ``pytest tests/perf --benchmark-compare`` to compare with the last saved
run. Each round is exactly ``REQUESTS`` round trips over ``CONNECTIONS`` connections (one in
flight each); ``extra_info`` holds the throughput and latency percentiles. These are trend
figures for one machine: absolute numbers from another day are no gate (``bench regress`` is).
"""

from __future__ import annotations

import pytest
from _helpers_server import running_server
from _perf_load import LoadResult, closed_loop, histogram, split_placement
from pytest_benchmark.fixture import BenchmarkFixture

import servers

pytestmark = pytest.mark.perf

CONNECTIONS = 16
REQUESTS = 20_000
PAYLOAD = 64
ROUNDS = 5


@pytest.mark.parametrize("model", servers.available_models())
def test_echo_closed_loop(benchmark: BenchmarkFixture, model: str) -> None:
    # past the clients a model serves at once, connections would only wait in a queue
    connections = min(CONNECTIONS, servers.clients_at_once(model) or CONNECTIONS)
    rounds: list[LoadResult] = []
    with running_server(model) as server, split_placement(server.pid):

        def one_round() -> None:
            rounds.append(closed_loop(server.address, connections, REQUESTS, PAYLOAD))

        closed_loop(server.address, connections, REQUESTS // 10, PAYLOAD)  # warm-up
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
        assert server.alive()
    merged = histogram(rounds)
    rates = sorted(r.throughput_rps for r in rounds)
    benchmark.extra_info.update({
        "model": model, "connections": connections, "requests_per_round": REQUESTS,
        "payload_bytes": PAYLOAD, "throughput_rps": rates[len(rates) // 2],
        "throughput_rps_min": rates[0], "throughput_rps_max": rates[-1],
        "p50_us": merged.get_value_at_percentile(50),
        "p99_us": merged.get_value_at_percentile(99),
        "p99_9_us": merged.get_value_at_percentile(99.9),
        "max_us": merged.get_max_value(),
    })
    assert merged.get_total_count() == REQUESTS * ROUNDS
