"""The report's Classics sections: the field's known results beside their published sources.

``python -m bench classics RUN_DIR`` writes RUN_DIR/classics.json (bench/classics/document.py);
the report shows it when the run folder has that file, and writes it first when a run of the
classics scenario has none yet. A verdict table opens the part; then each experiment under its
own heading: the source, the published expectation, the verdict with its measured reason, and
one chart in the form the source published (``charts/classics-<name>.png``, drawn by
bench/report/classics_charts.py).

The charts read only the ``chart`` dict of each experiment (its ``kind`` picks the drawing) and,
where the chart needs more than its points (the idle slopes, the echo table's ranges, the
predicted jump of coordinated omission), the finding's ``measured`` figures: every number drawn
is one the analysis wrote.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from bench.analysis.validity import TAIL_SAMPLES
from bench.classics import document as classics_document
from bench.classics.common import NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED
from bench.report import classics_charts, details, plotting
from bench.report.blocks import Section, Table

SHORT_REASON = 110  # characters of the reason in the verdict table; the full one is below
VERDICT_STYLE = {REPRODUCED: "background: #c8ebc8", NOT_REPRODUCED: "background: #f8cfc4",
                 NOT_MEASURABLE: "background: #ececec"}
NOTES = (("usl", "Universal Scalability Law"), ("free_threaded", "Free-threaded threads"))


# ---------------------------------------------------------------- the sections


def classics_sections(run_dir: Path, palette: plotting.Palette | None = None) -> list[Section]:
    """The verdict table and a section per experiment, when the run folder has classics.json
    (written first for a classics run that has none); otherwise nothing."""
    path = run_dir / classics_document.FILE_NAME
    if not path.exists():
        if _scenario(run_dir) != "classics":
            return []
        classics_document.write(run_dir)
    content = json.loads(path.read_text())
    if content.get("format") != classics_document.FORMAT:
        return [Section("Classics", [
            f"{path.name} is in format {content.get('format')!r}; this report reads format "
            f"{classics_document.FORMAT}. `python -m bench classics {run_dir}` writes it again."])]
    experiments = content.get("experiments") or []
    palette = _palette(experiments, palette)
    out = run_dir / "charts"
    for old in out.glob(f"{classics_charts.CHART_PREFIX}*.png"):
        old.unlink()
    return [_summary(content, path), *[_experiment(e, palette, out) for e in experiments]]


def _scenario(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("scenario")
    except (OSError, ValueError):
        return None


def _palette(experiments: list[dict[str, Any]], palette: plotting.Palette | None
             ) -> plotting.Palette:
    """The report's colours, extended to the models only the classics name (``prefork@2cpu``
    takes prefork's colour): a model keeps its colour from chart to chart."""
    names = [*(palette.styles if palette else [])]
    for experiment in experiments:
        names += classics_charts.chart_models(experiment.get("chart") or {})
    return plotting.Palette.for_variants(list(dict.fromkeys(names)))


def _summary(content: dict[str, Any], path: Path) -> Section:
    machine = content.get("machine") or {}
    interpreters = ", ".join(f"{i.get('implementation', 'Python')} {i.get('version', '?')}"
                             for i in content.get("interpreters") or []) or "not recorded"
    counts = content.get("verdicts") or {}
    experiments = content.get("experiments") or []
    table = Table(["experiment", "verdict", "measured (the full reason under its heading)"],
                  [[_short_title(e), e["verdict"], textwrap.shorten(e["reason"], SHORT_REASON,
                                                                    placeholder=" …")]
                   for e in experiments])
    table.styles = {(r, 1): VERDICT_STYLE.get(e["verdict"], "")
                    for r, e in enumerate(experiments)}
    return Section("Classics: the field's known results, reproduced here", [
        "Each experiment repeats a published result on this machine and compares: reproduced, "
        "not reproduced (with the measured reason), or not measurable here (with the reason). "
        "Absolute figures do not travel between machines; orderings, ratios and shapes may.",
        f"{path.name} ({content.get('created', '?')}): {counts.get(REPRODUCED, 0)} reproduced, "
        f"{counts.get(NOT_REPRODUCED, 0)} not reproduced, {counts.get(NOT_MEASURABLE, 0)} not "
        f"measurable here; measured on {machine.get('cpu_model') or '?'} "
        f"({machine.get('cpu_count') or '?'} CPUs), {interpreters}.",
        table])


def _short_title(experiment: dict[str, Any]) -> str:
    """'Idle connections' of 'Idle connections: select and poll pay ...'."""
    return str(experiment.get("title") or experiment["name"]).partition(":")[0]


def _experiment(experiment: dict[str, Any], palette: plotting.Palette, out: Path) -> Section:
    blocks: list[Any] = [
        f"Source: {experiment['source']}.",
        f"Published: {experiment['expectation']}",
        f"Verdict: {experiment['verdict']}. "
        f"{'Why' if experiment['verdict'] == NOT_MEASURABLE else 'Measured'}: "
        f"{_sentence(experiment['reason'])}",
    ]
    measured = experiment.get("measured") or {}
    blocks += [f"{label}: {measured[key]}." for key, label in NOTES
               if isinstance(measured.get(key), str)]
    if experiment.get("left_out"):
        blocks.append(_left_out_sentence(experiment["left_out"]))
    if experiment.get("chart", {}).get("kind") == "ratio_table":
        blocks += _ratio_table(measured)
    chart = classics_charts.draw(experiment, palette, out)
    if chart is not None:
        blocks.append(chart)
    return Section(str(experiment.get("title") or experiment["name"]), blocks, level=3)


def _left_out_sentence(left_out: dict[str, int]) -> str:
    """The experiment's trials with figures left out, in the words of the run's own
    exclusion sentence (bench/report/details.py)."""
    parts = [f"{count} {details.REASON_WORDS.get(kind, kind)}"
             for kind, count in left_out.items() if kind != "samples"]
    if left_out.get("samples"):
        parts.append(f"{left_out['samples']} with a p99 on fewer than {TAIL_SAMPLES} samples "
                     "beyond it (shown, not ranked)")
    return ("Trials of this experiment with figures left out (a trial may have several "
            "reasons): " + ", ".join(parts) + ".")


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _ratio_table(measured: dict[str, Any]) -> list[Table]:
    """The echo table in numbers: each model's throughput over tornado's per size, ours
    (median [range of rounds]) beside the published ratio."""
    table = measured.get("table") or {}
    sizes = list(table)
    models = list(dict.fromkeys(m for cells in table.values() for m in cells))
    if not models:
        return []
    rows = []
    for model in models:
        row = [model]
        for size in sizes:
            cell = table[size].get(model) or {}
            ours, published = cell.get("over_tornado") or {}, cell.get("published_over_tornado")
            row += [_ratio_words(ours), "—" if published is None else f"{published:.2f}×"]
        rows.append(row)
    columns = ["model"] + [f"{size} {who}" for size in sizes for who in ("ours", "published")]
    return [Table(columns, rows, numeric=set(range(1, len(columns))))]


def _ratio_words(cell: dict[str, Any]) -> str:
    if cell.get("median") is None:
        return "—"
    if cell.get("n", 0) > 1 and cell.get("low") != cell.get("high"):
        return f"{cell['median']:.2f}× [{cell['low']:.2f}–{cell['high']:.2f}]"
    return f"{cell['median']:.2f}×"


# ---------------------------------------------------------------- one chart per experiment
