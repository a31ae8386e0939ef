"""The report's first screen: the scorecard, one sentence per workload, and how sure.

Every figure here comes from ``bench.analysis.scorecard`` (the same one the terminal summary
and answer.json use); this module only lays it out and colours it.
"""

from __future__ import annotations

import math
from typing import Any

from bench.analysis.assurance import NOISE_LIMIT, Assurance
from bench.analysis.frames import Run, is_native
from bench.analysis.scorecard import model_order
from bench.analysis.validity import (
    MARK_ERRORS,
    MARK_FAILED,
    MARK_NOTES,
    MARK_QUEUES,
    MARK_SATURATED,
)
from bench.analysis.workload import Cell, Workload
from bench.report.blocks import Bullets, Section, Table, fmt_figure

WHY_NATIVE = ("Ratios to native (the C server, measured in the same run on the same machine) "
              "travel between machines and days; absolute req/s does not: this suite's 2-core "
              "machine has run three times slower from one day to the next.")

# cell colours: the leader and its ties green, then yellow to red with how many times worse
GOOD, TIED, UNSURE = "#9fd89f", "#c8ebc8", "#e4f2c4"
BOUND, MISSING, REFERENCE = "#cfe3f7", "#ececec", "#f4f4f4"
RAMP = [(1.0, (255, 243, 176)), (2.0, (253, 204, 138)), (4.0, (244, 151, 120)),
        (16.0, (222, 102, 102))]


def badness_colour(badness: float) -> str:
    """A CSS colour for a cell this many times worse than the leader (log scale)."""
    if badness != badness:
        return MISSING
    x = math.log(max(badness, 1.0))
    for (low, a), (high, b) in zip(RAMP, RAMP[1:], strict=False):
        if badness <= high:
            t = (x - math.log(low)) / (math.log(high) - math.log(low))
            rgb = [round(p + (q - p) * t) for p, q in zip(a, b, strict=True)]
            return "#" + "".join(f"{c:02x}" for c in rgb)
    return "#" + "".join(f"{c:02x}" for c in RAMP[-1][1])


def cell_colour(cell: Cell) -> str:
    return {"best": GOOD, "tie": TIED, "untested": UNSURE, "bound": BOUND,
            "missing": MISSING, "reference": REFERENCE}.get(cell.status) \
        or badness_colour(cell.badness)


def missing_mark(note: str) -> str:
    """The validity marker that goes with a missing cell's reason."""
    for needle, mark in (("failed", MARK_FAILED), ("at once by design", MARK_QUEUES),
                         ("client saturated", MARK_SATURATED), ("errors", MARK_ERRORS),
                         ("unanswered", MARK_ERRORS), ("not held", MARK_ERRORS)):
        if needle in note:
            return mark
    return ""


def _ratio(value: float) -> str:
    if value == math.inf:
        return "∞"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def cell_text(cell: Cell, workload: Workload) -> str:
    """A cell's text: 'best 52,300 req/s', '0.62× [0.60–0.64]', '≥ 0.9× †', '— §'."""
    span = cell.interval
    inside = f"\n[{_ratio(span[0])}–{_ratio(span[1])}]" if span else ""  # a line of its own
    if cell.status == "best":
        return f"best\n{fmt_figure(cell.value, workload.figure)}"
    if cell.status == "missing":
        if workload.kind == "sweep" and cell.value == 0:
            return "misses SLO"
        return ("— " + missing_mark(cell.note)).strip()
    if cell.status == "bound":
        return f"≥ {_ratio(cell.relative)}× {MARK_SATURATED}"
    text = f"{_ratio(cell.relative)}×"
    if cell.status == "tie":
        text += " tie"
    elif cell.status == "untested" or (not span and cell.status == "worse"):
        text += f" ? n={cell.n}"  # too few valid rounds to tell
    return text + inside


def cell_title(cell: Cell, workload: Workload) -> str:
    """The tooltip: the figure itself, its interval, and why a cell is empty."""
    if cell.status == "missing":
        return cell.note
    words = f"{fmt_figure(cell.value, workload.figure)} (median of {cell.n})"
    if cell.interval:
        words += ("; its ratio to the leader ranged "
                  f"{cell.interval[0]:.3g}–{cell.interval[1]:.3g} over the rounds")
    return words + (f"; {cell.note}" if cell.note else "")


def scorecard_table(items: list[Workload]) -> Table:
    """Models (rows) × workloads (columns), each cell relative to the column's leader."""
    order = model_order(items)
    columns = ["model", *[f"{w.name} {'↑' if w.better == 'higher' else '↓'}" for w in items]]
    table = Table(columns, [], numeric=set(range(1, len(columns))), css_class="scorecard")
    marks = ""
    for r, model in enumerate(order):
        label = f"{model} (reference)" if is_native(model) else model
        row = [label]
        for c, workload in enumerate(items, start=1):
            cell = workload.cells.get(model)
            if cell is None:
                row.append("")
                continue
            text = cell_text(cell, workload)
            marks += text
            row.append(text)
            table.styles[(r, c)] = f"background:{cell_colour(cell)}"
            table.titles[(r, c)] = cell_title(cell, workload)
        table.rows.append(row)
    table.footnotes = [
        "↑ higher is better (throughput, rate within the SLO), ↓ lower is better (latency, "
        "CPU, memory). Each cell: the model's median over the column's leader (×), with the "
        "range of that ratio over the rounds in brackets (not a confidence interval); green: "
        "the leader and the models it cannot be told apart from (a two-sided signed-rank test "
        "on the round-paired ratios, Holm-corrected over the run's verdicts, and an effect of "
        "at least the minimum); yellow to red: how many times worse; blue ≥: a lower bound "
        "(the client saturated first); grey —: no valid figure (hover for why). native is "
        "the reference, never ranked. ? n=…: too few rounds with a valid figure to tell it "
        "from the leader either way (pale).",
        *[f"{m} {MARK_NOTES[m]}." for m in MARK_NOTES if m in marks]]
    return table


def answer_sections(run: Run, items: list[Workload], sure: Assurance,
                    overview: list[str], heatmap: Any | None) -> list[Section]:
    """The report's first sections: the scorecard, the answers, how sure."""
    if not items:
        return [Section("How sure", [*overview, *_sure_lines(sure)])]
    card: list[Any] = [
        "Which model, for which load: each column is one workload of this run, each cell a "
        "model's figure relative to the best in that column.", scorecard_table(items)]
    answers = Section("The answer, per workload", [Bullets([w.sentence for w in items])])
    blocks: list[Any] = [*_sure_lines(sure), *overview, _cells_table(sure)]
    sections = [Section("Scorecard", card), answers, Section("How sure", blocks)]
    if heatmap is not None:
        answers.blocks.append(heatmap)
    return sections


def _sure_lines(sure: Assurance) -> list[str]:
    low, high = sure.repetitions
    reps = f"{low}" if low == high else f"{low} to {high}"
    lines = [
        f"Repetitions: {reps} per case and model"
        + ("; with one, there is no test and a verdict is 'unconfirmed'." if low < 2
           else "; a verdict is an exact two-sided signed-rank test on the round-paired "
           "ratios, Holm-corrected over the run's verdicts (a run shows a false 'clear' with "
           "probability at most 5 %)."),
        f"Valid cells: {sure.cells_valid} of {sure.cells_total} (case, model, metric) "
        f"({sure.cells_valid / sure.cells_total:.0%})." if sure.cells_total else
        "Valid cells: none yet.",
        _saturation(sure), _noise(sure), _load(sure),
        f"Machine calibration: {sure.calibration}.", WHY_NATIVE,
    ]
    return [line for line in lines if line]


def _noise(sure: Assurance) -> str:
    """The noisy-run warning: the reference moved more than NOISE_LIMIT across the rounds."""
    if not sure.noisy:
        return ""
    cases = ", ".join(f"{case} {spread:.0%}" for case, spread in sure.noisy.items())
    return (f"A noisy run: the reference (native) varied more than {NOISE_LIMIT:.0%} across "
            f"the rounds ({cases}). The paired test divides a round's drift out, but a "
            "machine this unsteady may also shift models against each other.")


def _saturation(sure: Assurance) -> str:
    if not sure.saturated:
        return "The client never saturated."
    models = ", ".join(sure.saturated_models)
    return (f"Client saturated in {sure.saturated} of {sure.trials} trials ({models}): their "
            "throughput and latency describe the load generator and are left out; their "
            "server-side figures (CPU and context switches per request, memory) are kept.")


def _load(sure: Assurance) -> str:
    before, after = sure.load_before, sure.load_after
    if not isinstance(before, list | tuple) or not before:
        return ""
    text = f"Load average (1, 5, 15 min) before the run {', '.join(f'{x:g}' for x in before)}"
    if isinstance(after, list | tuple) and after:
        text += f", after {', '.join(f'{x:g}' for x in after)}"
    return text + (f", on {sure.cpus} CPUs." if sure.cpus else ".")


def _cells_table(sure: Assurance) -> Table:
    rows = [[case, f"{valid}/{total}", f"{valid / total:.0%}" if total else "—"]
            for case, (valid, total) in sure.per_case.items()]
    table = Table(["case", "valid cells", "share"], rows, numeric={1, 2})
    table.footnotes = ["A cell is one (case, model, metric) of throughput, p50, p99, p99.9, "
                       "CPU and context switches per request, RSS per connection, threads and "
                       "descriptors; it is valid when any repetition's figure is."]
    return table
