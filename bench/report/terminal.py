"""The terminal summary: the scorecard in short, how sure, the files, and one line per workload,
ending with the path of report.html. Fits 100 columns without cutting a model name."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from bench.analysis.assurance import NOISE_LIMIT, Assurance
from bench.analysis.frames import is_native
from bench.analysis.scorecard import model_order
from bench.analysis.validity import MARK_SATURATED
from bench.analysis.workload import Cell, Workload
from bench.report.front import missing_mark

CELL_WIDTH = 10  # '0.62×', 'best', 'tie 0.98×', '≥ 0.9× †', '— §'
LEGEND = ("tie: the paired test cannot tell it from the best; ?: no test (fewer than two "
          "rounds); ≥…†: a lower bound (client saturated); —: left out (the mark says why; "
          "report.html's legend explains each); (…): native, the reference.")


def short_cell(cell: Cell | None) -> str:
    """A scorecard cell without its interval (the report has it)."""
    if cell is None:
        return ""
    ratio = f"{cell.relative:.2g}×" if cell.relative == cell.relative else "—"
    return {
        "best": "best",
        "tie": f"tie {ratio}",
        "bound": f"≥{ratio}{MARK_SATURATED}",
        "missing": ("— " + missing_mark(cell.note)).strip(),
        "reference": f"({ratio})",
        "untested": f"{ratio}?",
    }.get(cell.status, ratio)


def _chunks(items: list[Workload], model_width: int, width: int) -> list[list[Workload]]:
    """Workloads split so that each table (model column plus cells) fits ``width``."""
    room = max(1, (width - model_width - 4) // (CELL_WIDTH + 3))
    return [items[i:i + room] for i in range(0, len(items), room)] or [[]]


def scorecard_tables(items: list[Workload], width: int) -> list[RichTable]:
    """The scorecard as one or more rich tables that each fit ``width`` columns."""
    order = model_order(items)
    model_width = max([len(m) + (12 if is_native(m) else 0) for m in order] + [5])
    tables = []
    for part, chunk in enumerate(_chunks(items, model_width, width)):
        title = ("Summary: each model relative to the best per workload (× best; higher or "
                 "lower is better per column)") if part == 0 else None
        table = RichTable(title=title, title_justify="left", pad_edge=False)
        table.add_column("model", no_wrap=True, min_width=model_width)
        for workload in chunk:
            table.add_column(workload.short, justify="right", max_width=CELL_WIDTH,
                             overflow="fold")
        for model in order:
            label = f"{model} (reference)" if is_native(model) else model
            table.add_row(label, *[short_cell(w.cells.get(model)) for w in chunk])
        tables.append(table)
    return tables


def sure_lines(sure: Assurance) -> list[str]:
    """How sure, in three lines."""
    low, high = sure.repetitions
    reps = f"{low}" if low == high else f"{low}-{high}"
    share = f" ({sure.cells_valid / sure.cells_total:.0%})" if sure.cells_total else ""
    lines = [f"repetitions {reps}; valid cells {sure.cells_valid}/{sure.cells_total}{share}; "
             f"client saturated in {sure.saturated} of {sure.trials} trials"]
    before, after = sure.load_before, sure.load_after
    if isinstance(before, list | tuple) and before:
        load = f"load average {before[0]:g} before"
        if isinstance(after, list | tuple) and after:
            load += f", {after[0]:g} after"
        lines.append(load + (f" (on {sure.cpus} CPUs)" if sure.cpus else ""))
    lines.append(f"machine: {sure.calibration}")
    if sure.noisy:
        lines.append(f"noisy run: native varied over {NOISE_LIMIT:.0%} across rounds in "
                     + ", ".join(f"{c} ({s:.0%})" for c, s in sure.noisy.items()))
    return lines


def print_answer(console: Console, items: list[Workload], sure: Assurance,
                 paths: dict[str, Path], warnings: list[str]) -> None:
    """Scorecard, how sure, warnings, the other files, one line per workload, report.html."""
    width = console.width or 100
    for table in scorecard_tables(items, width) if items else []:
        console.print(table)
    if items:
        console.print(LEGEND, highlight=False)
    for line in sure_lines(sure):
        console.print(line, highlight=False)
    for warning in warnings:
        console.print(f"[yellow]{warning}[/yellow]", highlight=False)
    for name, path in paths.items():
        if name != "html":
            console.print(f"{name}: {path}", highlight=False)
    for workload in items:
        console.print(f"• {workload.answer_line()}", highlight=False)
    if "html" in paths:
        console.print(f"report: {paths['html']}", highlight=False, soft_wrap=True)
