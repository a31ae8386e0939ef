"""The report's Classics part: from a run folder's classics.json (bench/classics/document.py), a
verdict table and one section per experiment with its chart in the published form.

The classics.json here is made by hand, one experiment per chart kind, so that each drawing is
exercised on data shaped as the analysis writes it; the figures the charts hold are read back
from the matplotlib figures before they are saved.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _helpers_report import PNG_MAGIC, echo_run, make_trial, write_run
from matplotlib.figure import Figure

from bench.classics import document as classics_document
from bench.report import classics as classics_report
from bench.report import document as report
from bench.report import plotting
from bench.report.blocks import Section, Table

LONG_REASON = ("pause 1.40 s over 11,997 requests: corrected p99 1,342 ms, uncorrected 468.2 ms, "
               "jump above 140 ms at p69.13 (predicted p78.99); the uncorrected p99 is far above "
               "milliseconds because the client itself lagged behind its schedule")


def _experiment(name: str, title: str, verdict: str, chart: dict[str, Any],
                measured: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "title": title, "source": f"the source of {name}",
            "expectation": f"what {name} published.", "numbers": extra.get("numbers"),
            "verdict": verdict, "reason": extra.get("reason", f"measured reason of {name}"),
            "measured": measured or {}, "chart": chart, "left_out": extra.get("left_out", {})}


def _fit(intercept: float, slope: float, max_idle: int) -> dict[str, Any]:
    return {"intercept_us": intercept, "slope_us_per_1000": slope, "slope_low": slope - 1,
            "slope_high": slope + 1, "points": 8, "levels": 4, "max_idle": max_idle}


def _spectrum(jump_at: float, high_ms: float) -> list[list[float]]:
    levels = [0.0, 0.5, 0.7, jump_at, 0.9, 0.99, 0.999, 0.9999]
    return [[q, 0.2 if q < jump_at else high_ms * q] for q in levels]


EXPERIMENTS = [
    _experiment("idle", "Idle connections: select pays", "reproduced",
                {"kind": "cpu_per_request_vs_idle", "x": "idle connections held",
                 "y": "server CPU µs per request",
                 "columns": ["idle", "cpu_us_per_request", "throughput_rps"],
                 "series": {"select": [[0, 10.0, 30000], [250, 13.0, 26000], [500, 16.5, 23000],
                                       [900, 22.0, None]],
                            "epoll": [[0, 9.0, 31000], [250, 9.1, 31000], [500, 8.9, 30500],
                                      [900, 9.0, 30800]]}},
                {"models": {"select": {"fit": _fit(10.0, 13.1, 900)},
                            "epoll": {"fit": _fit(9.0, -0.3, 900)}}},
                left_out={"saturated": 1, "samples": 3}),
    _experiment("convoy", "The GIL's convoy: ECHOs wait", "not reproduced",
                {"kind": "bars_with_lines", "y": "ECHO median latency (ms)",
                 "bars": {"threaded": 5.2, "epoll": 48.0, "prefork@2cpu": 0.03,
                          "asyncio": None},
                 "lines": {"switch interval": 5.0, "WORK duration": 47.5}},
                {"free_threaded": "not run here"}),
    _experiment("cores", "Cores: processes scale", "not reproduced",
                {"kind": "scaling_bars", "y": "throughput on 2 CPUs ÷ on 1",
                 "bars": {"prefork": {"median": 1.8, "low": 1.6, "high": 1.95, "n": 3},
                          "threaded": {"median": 0.97, "low": 0.9, "high": 1.1, "n": 3},
                          "epoll": {"median": None, "low": None, "high": None, "n": 0}},
                 "lines": {"2x": 2.0, "1x": 1.0}},
                {"usl": "not fitted: 2 CPU counts"},
                numbers={"scaling_prefork": 2.0, "scaling_gil_threads": 1.0}),
    _experiment("echo-table", "MagicStack's echo table: the ratios", "not reproduced",
                {"kind": "ratio_table", "y": "throughput ÷ tornado's (same round)",
                 "sizes": ["1 KiB", "100 KiB"],
                 "measured": {"1 KiB": {"gevent": 1.4, "tornado": 1.0, "uvloop": 2.4,
                                        "asyncio": 1.5},
                              "100 KiB": {"gevent": 1.2, "tornado": 1.0, "uvloop": None,
                                          "asyncio": 1.4}},
                 "published": {"1 KiB": {"gevent": 1.53, "tornado": 1.0},
                               "100 KiB": {"gevent": 1.99, "tornado": 1.0}}},
                {"table": {"1 KiB": {"gevent": {"over_tornado": {"median": 1.4, "low": 1.1,
                                                                 "high": 1.6, "n": 5},
                                                "published_over_tornado": 1.53}}}},
                numbers={"uvloop_over_asyncio_at_least": 2.0}),
    _experiment("omission", "Coordinated omission: the pause", "not reproduced",
                {"kind": "spectrum", "x": "percentile", "y": "latency (ms)",
                 "lines": {"corrected": _spectrum(0.79, 1400.0),
                           "uncorrected": _spectrum(0.99, 20.0) + [[1.0, 20.0]]},
                 "pause_ms": 1400.0},
                {"jump_percentile_predicted": 78.97}, reason=LONG_REASON),
    _experiment("overload", "Overload: threads collapse", "reproduced",
                {"kind": "overload", "x": "offered load (x capacity)",
                 "y": "goodput (x capacity)",
                 "models": {"epoll": {"goodput": [[0.5, 0.5], [1.0, 0.98], [2.0, 1.0]],
                                      "timelines": {"2": [[0, 30000, 50.0], [0.5, 30000, 90.0],
                                                          [1.0, 29000, 160.0]]}},
                            "threaded": {"goodput": [[0.5, 0.5], [1.0, 0.9], [2.0, 0.4]],
                                         "timelines": {"1": [[0, 20000, 5.0]],
                                                       "2": [[0, 9000, 300.0],
                                                             [0.5, 8000, 900.0]]}}}}),
    _experiment("open-closed", "Open versus closed: the tails", "not measurable here",
                {"kind": "paired_bars", "y": "p99 (µs)",
                 "bars": {"epoll": {"closed": 3800.0, "open": 9100.0},
                          "threaded": {"closed": 4100.0, "open": None}}}),
]


def classics_content(experiments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = copy.deepcopy(EXPERIMENTS if experiments is None else experiments)
    return {"format": classics_document.FORMAT, "created": "2026-12-07T18:00:00+00:00",
            "run_id": "synthetic", "machine": {"cpu_model": "test CPU", "cpu_count": 2},
            "interpreters": [{"implementation": "CPython", "version": "3.11.7"}],
            "verdicts": {v: sum(e["verdict"] == v for e in found) for v in
                         ("reproduced", "not reproduced", "not measurable here")},
            "experiments": found}


def _folder(tmp_path: Path, content: dict[str, Any]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / classics_document.FILE_NAME).write_text(json.dumps(content))
    return tmp_path


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Every figure the classics charts save, by file name, as drawn."""
    drawn: dict[str, Figure] = {}
    save = plotting.save

    def keep(fig: Figure, path: Path) -> Path:
        drawn[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(plotting, "save", keep)
    return drawn


def _charts(section: Section) -> list[plotting.Chart]:
    return [b for b in section.blocks if isinstance(b, plotting.Chart)]


def _text(section: Section) -> str:
    return "\n".join(b for b in section.blocks if isinstance(b, str))


def test_every_experiment_has_its_section_verdict_and_one_chart(
        tmp_path: Path, figures: dict[str, Figure]) -> None:
    sections = classics_report.classics_sections(_folder(tmp_path, classics_content()))
    summary, parts = sections[0], sections[1:]
    assert [s.title for s in parts] == [e["title"] for e in EXPERIMENTS]
    assert all(s.level == 3 for s in parts) and summary.level == 2
    table = next(b for b in summary.blocks if isinstance(b, Table))
    assert [row[:2] for row in table.rows] == [[e["title"].partition(":")[0], e["verdict"]]
                                                for e in EXPERIMENTS]
    for experiment, section in zip(EXPERIMENTS, parts, strict=True):
        text = _text(section)
        assert experiment["source"] in text and experiment["expectation"] in text
        assert f"Verdict: {experiment['verdict']}." in text and experiment["reason"] in text
        (chart,) = _charts(section)
        assert chart.path.read_bytes().startswith(PNG_MAGIC)
        assert chart.path.name == f"classics-{experiment['name']}.png"
    assert len(figures) == len(EXPERIMENTS)


def test_the_verdict_table_shortens_a_long_reason_given_in_full_below(tmp_path: Path) -> None:
    summary, *parts = classics_report.classics_sections(_folder(tmp_path, classics_content()))
    table = next(b for b in summary.blocks if isinstance(b, Table))
    row = next(r for r in table.rows if r[0] == "Coordinated omission")
    assert row[2].endswith("…") and len(row[2]) <= classics_report.SHORT_REASON
    omission = next(s for s in parts if s.title.startswith("Coordinated omission"))
    assert LONG_REASON in _text(omission)
    assert "1 reproduced" not in _text(summary) and "2 reproduced" in _text(summary)


def test_the_charts_hold_the_published_form(tmp_path: Path, figures: dict[str, Figure]
                                            ) -> None:
    classics_report.classics_sections(_folder(tmp_path, classics_content()))
    cost, rate = figures["classics-idle.png"].axes
    legend = [t.get_text() for t in figures["classics-idle.png"].legends[0].get_texts()]
    assert any(t.startswith("select: +13.1 µs per 1,000 idle") for t in legend)
    assert any(t.startswith("epoll: -0.3 µs") for t in legend)
    assert len(rate.lines) == 2  # the reply rate, one line per model

    (convoy,) = figures["classics-convoy.png"].axes
    assert convoy.get_yscale() == "log"
    levels = sorted(line.get_ydata()[0] for line in convoy.lines)
    assert levels == [5000.0, 47500.0]  # switch interval and WORK duration, in µs
    assert "no valid figure" in [t.get_text().strip() for t in convoy.texts]  # asyncio: null

    (cores,) = figures["classics-cores.png"].axes
    references = {line.get_label(): line.get_ydata()[0] for line in cores.lines
                  if not line.get_label().startswith("_")}  # not the error bars' caps
    assert references == {"2x: published for prefork": 2.0,
                          "1x: published for GIL threads": 1.0}
    assert len(cores.patches) == 2  # epoll has no paired round: no bar, no crash
    assert len(cores.collections) == 1  # the rounds' ranges as error bars

    echo = figures["classics-echo-table.png"].axes
    assert [ax.get_title() for ax in echo] == ["1 KiB", "100 KiB"]
    published = [p for ax in echo for p in ax.patches if p.get_hatch()]
    assert sorted(p.get_height() for p in published) == [1.0, 1.0, 1.53, 1.99]
    claims = [c for c in echo[0].collections if c.get_linestyle()[0][1] is not None]
    assert claims, "uvloop's published claim (at least 2x asyncio) is drawn at 1 KiB"

    (spectrum,) = figures["classics-omission.png"].axes
    assert spectrum.get_xscale() == "log"
    styles = {line.get_label(): line for line in spectrum.lines}
    assert {"corrected", "uncorrected", "the pause: 1,400 ms"} <= set(styles)
    assert styles["the pause: 1,400 ms"].get_ydata()[0] == 1_400_000
    assert max(styles["uncorrected"].get_xdata()) < float("inf")  # p100 left out, not drawn

    goodput, tail = figures["classics-overload.png"].axes
    assert [line.get_label() for line in goodput.lines][:2] == ["epoll", "threaded"]
    assert tail.get_yscale() == "log" and len(tail.lines) == 2
    assert "2× capacity" in tail.get_title()

    (paired,) = figures["classics-open-closed.png"].axes
    heights = sorted(p.get_height() for p in paired.patches if p.get_height() > 0)
    assert heights == [3800.0, 4100.0, 9100.0]


EMPTY_CHARTS = [
    {"kind": "cpu_per_request_vs_idle", "series": {"select": [[0, None, 100.0]]}},
    {"kind": "bars_with_lines", "bars": {"epoll": None}, "lines": {"switch interval": 5.0}},
    {"kind": "scaling_bars", "bars": {}, "lines": {"2x": 2.0}},
    {"kind": "scaling_bars", "bars": {"epoll": {"median": None, "low": None, "high": None,
                                                "n": 0}}},
    {"kind": "ratio_table", "sizes": [], "measured": {}, "published": {}},
    {"kind": "ratio_table", "sizes": ["1 KiB"], "measured": {"1 KiB": {"tornado": None}},
     "published": {"1 KiB": {"tornado": 1.0}}},
    {"kind": "spectrum", "lines": {}, "pause_ms": 0},
    {"kind": "overload", "models": {"epoll": {"goodput": [[1.0, None]], "timelines": {}}}},
    {"kind": "paired_bars", "bars": {"epoll": {"closed": None, "open": None}}},
    {"kind": "a kind this report does not know", "points": [[1, 2]]},
    {},
]


@pytest.mark.parametrize("chart", EMPTY_CHARTS, ids=lambda c: str(c.get("kind", "none")))
def test_a_finding_without_chart_data_is_text_without_a_chart(
        tmp_path: Path, chart: dict[str, Any]) -> None:
    finding = _experiment("x", "Something: not measurable", "not measurable here", chart,
                          reason="the run has no trial of the 'x' group")
    summary, section = classics_report.classics_sections(
        _folder(tmp_path, classics_content([finding])))
    assert _charts(section) == []
    assert "Why: the run has no trial of the 'x' group." in _text(section)
    assert not list((tmp_path / "charts").glob("*.png"))


def test_a_classics_run_without_the_file_gets_it_written(tmp_path: Path) -> None:
    records = [make_trial("echo64-c16-closed", "echo", "epoll", 1, 16, 40_000.0)]
    folder = write_run(tmp_path / "run", records, {"name": "classics"})
    meta = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**meta, "scenario": "classics"}))
    sections = classics_report.classics_sections(folder)
    written = json.loads((folder / classics_document.FILE_NAME).read_text())
    assert [s.title for s in sections[1:]] == [e["title"] for e in written["experiments"]]
    assert len(sections) == 1 + len(classics_document.EXPERIMENTS)


def test_another_scenario_without_the_file_has_no_classics_part(tmp_path: Path) -> None:
    folder = echo_run(tmp_path / "run", {"epoll": 40_000.0})
    assert classics_report.classics_sections(folder) == []
    assert not (folder / classics_document.FILE_NAME).exists()


def test_a_file_in_another_format_says_so(tmp_path: Path) -> None:
    content = {**classics_content(), "format": classics_document.FORMAT + 1}
    (section,) = classics_report.classics_sections(_folder(tmp_path, content))
    assert f"this report reads format {classics_document.FORMAT}" in _text(section)


def test_the_report_of_the_run_carries_the_classics(tmp_path: Path) -> None:
    folder = echo_run(tmp_path / "run", {"epoll": 50_000.0, "threaded": 30_000.0})
    (folder / classics_document.FILE_NAME).write_text(json.dumps(classics_content()))
    built = report.build_report(folder)
    markdown = built.paths["markdown"].read_text()
    assert "## Classics: the field's known results, reproduced here" in markdown
    for experiment in EXPERIMENTS:
        assert f"### {experiment['title']}" in markdown
        assert f"charts/classics-{experiment['name']}.png" in markdown
    assert built.paths["html"].read_text().count('src="data:image/png;base64,') >= len(
        EXPERIMENTS)
