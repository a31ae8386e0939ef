"""``make bench-hosts``'s summary (bench/hosts/compare.py) over synthetic run folders: the
medians of each placement, the per-round ratio hosts/embedded, each load host's share, and
what a failed or saturated trial does to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers_report import make_trial, write_run
from rich.console import Console

from bench.hosts import compare

CASE = "echo64-c16-closed"


def trial(model: str, throughput: float, *, hosts: tuple[int, int] | None = None,
          **options: Any) -> dict[str, Any]:
    record = make_trial(CASE, "echo", model, 0, 16, throughput, **options)
    if hosts is not None:
        record["hosts"] = {"load": [{"name": "load1", "requests": hosts[0]},
                                    {"name": "load2", "requests": hosts[1]}]}
    return record


def rounds(tmp_path: Path, placement: str, per_round: list[list[dict[str, Any]]]) -> list[Path]:
    return [write_run(tmp_path / f"{placement}{index}", records, {"name": "quick"})
            for index, records in enumerate(per_round)]


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, Any]]:
    embedded = rounds(tmp_path, "emb", [
        [trial("epoll", 100_000.0), trial("threaded", 50_000.0)],
        [trial("epoll", 120_000.0), trial("threaded", 60_000.0, saturated=True)],
        [trial("epoll", 110_000.0), trial("threaded", 55_000.0, failure="server exited")],
    ])
    hosts = rounds(tmp_path, "hosts", [
        [trial("epoll", 80_000.0, hosts=(40_000, 40_000)),
         trial("threaded", 45_000.0, hosts=(20_000, 25_000))],
        [trial("epoll", 108_000.0, hosts=(54_000, 54_000)),
         trial("threaded", 54_000.0, hosts=(27_000, 27_000))],
        [trial("epoll", 77_000.0, hosts=(38_000, 39_000)),
         trial("threaded", 50_000.0, hosts=(25_000, 25_000))],
    ])
    return compare.summarize({"embedded": embedded, "hosts": hosts})


def test_medians_and_the_ratio_of_each_round(rows: list[dict[str, Any]]) -> None:
    epoll = next(row for row in rows if row["model"] == "epoll")
    assert epoll["case"] == CASE and epoll["embedded_n"] == epoll["hosts_n"] == 3
    assert epoll["embedded_rps"] == 110_000.0 and epoll["hosts_rps"] == 80_000.0
    # each round's ratio pairs the two runs of that round, not the medians
    assert epoll["ratios"] == pytest.approx([0.8, 0.9, 0.7])
    assert epoll["ratio_rps"] == pytest.approx(0.8)
    assert (epoll["ratio_min"], epoll["ratio_max"]) == pytest.approx((0.7, 0.9))
    assert epoll["host_requests"] == {"load1": 40_000, "load2": 40_000}


def test_a_failed_trial_drops_its_round_and_saturation_is_counted(
        rows: list[dict[str, Any]]) -> None:
    threaded = next(row for row in rows if row["model"] == "threaded")
    assert threaded["embedded_n"] == 2 and threaded["hosts_n"] == 3
    assert threaded["embedded_saturated"] == 1 and threaded["hosts_saturated"] == 0
    assert threaded["ratios"] == pytest.approx([0.9, 0.9])  # round 3 had no embedded figure
    assert threaded["host_requests"] == {"load1": 25_000, "load2": 25_000}


def test_the_table_says_it_at_a_glance(rows: list[dict[str, Any]]) -> None:
    console = Console(width=100, record=True, color_system=None)
    for table in compare._tables(rows, 3):
        console.print(table)
    text = console.export_text()
    assert f"{CASE}: medians of 3 rounds" in text
    assert "0.80 [0.70–0.90]" in text and "40.0k / 40.0k" in text
    assert "1/2 0/3" in text  # threaded: saturated of valid, embedded then hosts
