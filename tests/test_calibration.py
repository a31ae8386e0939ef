"""The machine calibration recorded with every run (bench/run/calibration.py)."""

from __future__ import annotations

import os

import pytest

from bench.run import calibration
from servers.native import find_compiler

CPUS = sorted(os.sched_getaffinity(0))


def test_python_loop_rates_per_cpu_and_together() -> None:
    loop = calibration.python_loop(CPUS)
    assert set(loop["alone"]) == set(loop["all_at_once"]) == {str(cpu) for cpu in CPUS}
    # a pure-Python LCG step costs tens of nanoseconds: 10^5..10^9 per second on any machine
    for rate in [*loop["alone"].values(), *loop["all_at_once"].values()]:
        assert 1e5 < rate < 1e9


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler for calibrate.c")
def test_native_round_trips_and_syscall_cost() -> None:
    costs = calibration.native_costs(CPUS)
    # a round trip is two context switches or wake-ups: 1 to 1,000 µs, whatever the load
    assert 1e3 < costs["pingpong_same_cpu_per_s"] < 1e7
    assert 1 < costs["syscall_ns"] < 100_000
    if len(CPUS) > 1:
        assert 1e2 < costs["pingpong_two_cpus_per_s"] < 1e7


def test_measure_never_raises_and_says_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*_args: object) -> None:
        raise calibration.BuildError("no C compiler found")

    monkeypatch.setattr(calibration, "build", no_compiler)
    record = calibration.measure(CPUS[:1])
    assert record["native_error"] == "no C compiler found"
    assert "alone" in record["python_loop"]
    assert "Python loop" in calibration.describe(record)
