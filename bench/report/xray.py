"""The X-ray section: instructions and system calls per request, from the cost probe.

``python -m bench cost --json RUN_DIR/cost.json`` (``make cost RUN=RUN_DIR``) counts them under
valgrind and strace; the report shows them when the run folder has that file, and writes them
to xray.csv. These figures are deterministic, so they rank fast models that throughput on a
small machine cannot separate, and they show the mechanism: one ``epoll_wait`` per wake-up,
``select``'s descriptor scan, the non-blocking loop's failed reads, a thread model's futexes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.cost.xray import xray_rows
from bench.report.blocks import Section, Table

COST_FILE = "cost.json"
CSV_FILE = "xray.csv"
INTRO = ("Counted, not timed: instructions per request under valgrind's callgrind and system "
         "calls per request under strace, each the difference of two request counts on one "
         "running server (start-up and shutdown cancel). Neighbours on the machine do not "
         "change them; the gate in `make regress` compares them head against base.")


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.{digits}f}"


def xray_section(run_dir: Path) -> Section | None:
    """The section, and xray.csv beside the report, when the run folder has a probe record."""
    path = run_dir / COST_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    columns, rows = xray_rows(record)
    pd.DataFrame(rows, columns=columns).to_csv(run_dir / CSV_FILE, index=False)
    table = Table(["model", "case", "instructions", "system calls", "by name, per request"],
                  [[row["model"], row["case"], _number(row["instructions_per_request"], 0),
                    _number(row["syscalls_per_request"], 2),
                    row["syscalls_by_name"] or row["note"]] for row in rows],
                  numeric={2, 3})
    measured = record.get("created") or "?"
    return Section("X-ray: instructions and system calls per request",
                   [INTRO, f"Probe record {path.name} ({measured}); all figures in {CSV_FILE}.",
                    table])
