"""The report's "Percentile spectra" section: for every case with a valid latency, each model's
latency against percentile on a nines axis (spectrum_charts.case_spectra_chart), and the
merged histograms as HdrHistogram ``.hgrm`` files, for HdrHistogram's plotFiles or vegeta's hdrplot.

Files: ``charts/spectrum-<n>.png`` (n: the case's place in the run) and
``hgrm/<case>--<model>.hgrm`` (open loop also ``<case>--<model>.uncorrected.hgrm``), values in
milliseconds. Both folders are rewritten on every rendering.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.analysis.frames import Run, case_table
from bench.analysis.histograms import hgrm, merged_histogram, percentile_curve
from bench.analysis.validity import ok_column
from bench.report import plotting, spectrum_charts
from bench.report.blocks import Section
from bench.report.spectrum_charts import Curve

HGRM_DIR = "hgrm"
CHART_PREFIX = "spectrum-"
CORRECTED, UNCORRECTED = "histogram", "histogram_uncorrected"


def latency_cases(run: Run) -> list[str]:
    """The cases, in the run's order, with at least one trial whose p99 is valid."""
    frame = run.frame
    if frame.empty:
        return []
    valid = set(frame.loc[frame[ok_column("p99_us")], "case"])
    return [str(case) for case in case_table(frame)["case"] if case in valid]


def _file_name(case: str, variant: str, suffix: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", f"{case}--{variant}") + suffix


def _case_curves(run: Run, case: str, order: list[str], out: Path
                 ) -> tuple[dict[str, Curve], dict[str, Curve], list[Path]]:
    """Each model's corrected and uncorrected curve for one case, writing its .hgrm files."""
    rows = run.frame[(run.frame["case"] == case) & run.frame[ok_column("p99_us")]]
    corrected: dict[str, Curve] = {}
    uncorrected: dict[str, Curve] = {}
    written = []
    groups = {str(variant): group for variant, group in rows.groupby("variant", sort=False)}
    for variant in (v for v in order if v in groups):
        records = [run.trials[t] for t in groups[variant]["trial_id"]]
        for key, curves, suffix in ((CORRECTED, corrected, ".hgrm"),
                                    (UNCORRECTED, uncorrected, ".uncorrected.hgrm")):
            merged = merged_histogram(records, key)
            if merged is None:
                continue
            curves[variant] = percentile_curve(*merged)
            path = out / _file_name(case, variant, suffix)
            path.write_text(hgrm(*merged))
            written.append(path)
    return corrected, uncorrected, written


def spectra_section(run: Run, palette: plotting.Palette) -> Section | None:
    """The section, or None when no case has a valid latency."""
    cases = latency_cases(run)
    if not cases:
        return None
    hgrm_dir, chart_dir = run.run_dir / HGRM_DIR, run.run_dir / "charts"
    hgrm_dir.mkdir(exist_ok=True)
    for old in [*hgrm_dir.glob("*.hgrm"), *chart_dir.glob(f"{CHART_PREFIX}*.png")]:
        old.unlink()
    order = list(palette.styles)
    blocks: list[object] = [
        "Latency against percentile for every case, one line per model in its colour: each "
        "step right on the x axis is ten times rarer (50, 90, 99, 99.9 % ...), so the tail "
        "a mean or a p99 hides is in plain sight. Open-loop cases also show, dotted, the "
        "latency measured from when each request was sent rather than when it was due: the "
        "gap between the two is queueing the uncorrected figure would hide. The merged "
        f"histograms are in {HGRM_DIR}/ as HdrHistogram .hgrm files (values in ms), for "
        "HdrHistogram's plotFiles or vegeta's hdrplot."]
    files = 0
    for index, case in enumerate(cases, start=1):
        corrected, uncorrected, written = _case_curves(run, case, order, hgrm_dir)
        files += len(written)
        chart = spectrum_charts.case_spectra_chart(case, corrected, uncorrected, palette,
                                                   chart_dir / f"{CHART_PREFIX}{index:02d}.png")
        if chart is not None:
            blocks.append(chart)
    blocks.append(f"{files} .hgrm files in {HGRM_DIR}/.")
    return Section("Percentile spectra", blocks)
