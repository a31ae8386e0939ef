"""``python -m bench validate``: its verdicts and exit status, the freezer, the blocking client.

The full report card takes about a minute of measurement (``make validate``); these tests
check its pieces: a failed check exits 1 and a skipped one does not, the freezer stops a
process group for its share of each second, and the independent blocking client times a server
that is 2 ms late at 2 ms. (The redis check's pieces: tests/test_validate_redis.py.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import pytest

from bench.selfcheck import validate
from bench.selfcheck.swarm_speed import running_server


def options(only: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    return parser.parse_args(["--only", only, "--rounds", "1"])


@pytest.mark.parametrize(("outcome", "status"), [("pass", 0), ("skip", 0), ("fail", 1)])
def test_exit_status_follows_the_checks(monkeypatch: pytest.MonkeyPatch, outcome: str,
                                        status: int) -> None:
    fake = {"one": lambda work, rounds: [validate.Check("one", "figure", 1.0, "≥ 1", outcome)]}
    monkeypatch.setattr(validate, "CHECKS", fake)
    assert validate.run(options("one")) == status


def test_the_freezer_stops_a_process_group_for_its_share() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        stopped = total = 0
        with validate._freezing(child.pid, 0.2):
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                state = Path(f"/proc/{child.pid}/stat").read_text().split()[2]
                stopped += state == "T"
                total += 1
                time.sleep(0.005)
        assert 0.1 <= stopped / total <= 0.3, stopped / total
        time.sleep(0.05)
        assert Path(f"/proc/{child.pid}/stat").read_text().split()[2] != "T"  # resumed
    finally:
        child.kill()
        child.wait()


def test_the_blocking_client_times_a_server_2ms_late(tmp_path: Path) -> None:
    with running_server("threaded", None, tmp_path) as server:
        p50 = validate.blocking_p50_us(server.host, server.port, 2, 0.5)
    assert validate.SLEEP_US <= p50 < validate.SLEEP_US * 2, p50
    assert os.sched_getaffinity(0)  # untouched
