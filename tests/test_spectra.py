"""The report's percentile spectra: a chart per latency case with every model, corrected and
uncorrected lines where the case is open loop, and the merged histograms as .hgrm files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from _helpers_report import PNG_MAGIC, hdr_histogram, lognormal_latencies, make_trial, write_run
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.analysis.frames import load_run
from bench.analysis.histograms import decode_histogram, hgrm, merged_histogram
from bench.report import document as report
from bench.report import plotting, spectra

MODELS = ("epoll", "threaded")


def _records() -> list[dict]:
    records = []
    for rep in (1, 2):
        for seed, model in enumerate(MODELS):
            records.append(make_trial("echo64-c16-closed", "echo", model, rep, 16, 30_000,
                                      seed=seed + 10 * rep))
            trial = make_trial("echo64-c16-open-r1000", "echo", model, rep, 16, 1_000,
                               mode="open", rate=1_000.0, seed=seed + 10 * rep, p50_us=400.0)
            sent = lognormal_latencies(100.0, np.random.default_rng(rep))  # before queueing: faster
            trial["swarm"]["histogram_uncorrected"] = hdr_histogram(sent).encode().decode("ascii")
            records.append(trial)
    return records


def test_every_latency_case_gets_a_chart_and_hgrm_files(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", _records(), {"name": "synthetic", "cases": []}))
    palette = plotting.Palette.for_variants(list(MODELS))
    section = spectra.spectra_section(run, palette)
    assert section is not None and section.title == "Percentile spectra"
    drawn = [b for b in section.blocks if isinstance(b, plotting.Chart)]
    assert [c.title for c in drawn] == ["Percentile spectrum: echo64-c16-closed",
                                        "Percentile spectrum: echo64-c16-open-r1000"]
    assert all(c.path.read_bytes().startswith(PNG_MAGIC) for c in drawn)
    assert "dotted" in drawn[1].caption and "dotted" not in drawn[0].caption
    names = sorted(p.name for p in (run.run_dir / spectra.HGRM_DIR).iterdir())
    assert names == sorted([f"echo64-c16-closed--{m}.hgrm" for m in MODELS]
                           + [f"echo64-c16-open-r1000--{m}.hgrm" for m in MODELS]
                           + [f"echo64-c16-open-r1000--{m}.uncorrected.hgrm" for m in MODELS])


def test_an_hgrm_file_is_the_merged_histogram_in_milliseconds(tmp_path: Path) -> None:
    records = [r for r in _records() if r["model"] == "epoll" and r["mode"] == "closed"]
    merged, scale = merged_histogram(records)
    text = hgrm(merged, scale)
    rows = [line.split() for line in text.splitlines()[2:] if line and not line.startswith("#")]
    assert float(rows[-1][1]) == 1.0 and int(rows[-1][2]) == merged.get_total_count()
    assert merged.get_total_count() == sum(decode_histogram(r["swarm"])[0].get_total_count()
                                           for r in records)
    largest_ms = max(max(lognormal_latencies(200.0, np.random.default_rng(s)))
                     for s in (10, 20)) / 1e3
    assert abs(float(rows[-1][0]) - largest_ms) <= 0.01 * largest_ms
    assert text.endswith("\n")


@settings(max_examples=30, deadline=None)  # hdrh's writer, the reference, takes its time
@given(digits=st.integers(1, 3), unit=st.sampled_from([1e-3, 1.0, 1e3]), decoded=st.booleans(),
       values=st.lists(st.tuples(st.integers(1, 5_000_000), st.integers(1, 1000)),
                       min_size=1, max_size=200))
def test_an_hgrm_file_is_what_hdrh_writes(digits: int, unit: float, decoded: bool,
                                          values: list[tuple[int, int]]) -> None:
    """Byte for byte hdrh's ``output_percentile_distribution`` (the writer plotFiles and
    hdrplot expect), whose footer figures hgrm sums more quickly: the same buckets, the same
    order of the same float operations."""
    histogram = HdrHistogram(1, 60_000_000, digits)
    for value, count in values:
        histogram.record_value(value, count)
    if decoded:  # as the report reads them: decoded from the swarm's record
        histogram = HdrHistogram.decode(histogram.encode())
    written = io.BytesIO()
    histogram.output_percentile_distribution(written, 1000.0 / unit)
    assert hgrm(histogram, unit) == written.getvalue().decode("ascii")


def test_the_report_has_the_section(tmp_path: Path) -> None:
    built = report.build_report(write_run(tmp_path / "run", _records(),
                                          {"name": "synthetic", "cases": []}))
    assert "Percentile spectra" in [s.title for s in built.sections]
    assert "## Percentile spectra" in built.paths["markdown"].read_text()
