"""The Resources section: how each model behaves out of descriptors, from the probe.

``python -m bench resources --json RUN_DIR/resources.json`` (``make resources RUN=RUN_DIR``)
measures it (bench/resources.py, the same probe the conformance test runs); the report shows
it when the run folder has that file. How a model fails is part of choosing one: whether it
keeps answering the connections it holds, what it burns while it cannot accept, and how soon
it takes new clients again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report.blocks import Section, Table
from bench.resources import RECORD_FILE


def _intro(record: dict[str, Any]) -> str:
    return (f"Each model's processes limited to {record['fd_limit']} descriptors; "
            f"{record['connections']} clients connect and each asks one echo; the first "
            f"{record['held']} answered are asked again after {record['cpu_window_s']:g} s "
            "in which the server's own CPU is measured (its listening socket stays readable "
            "all along); then everyone leaves and a new client is timed to its first answer. "
            f"The rule (docs/protocol.md, rule 8): all held connections answered, CPU at most "
            f"{record['max_cpu_percent']:g} % of a core, a new client within "
            f"{record['max_recovery_s']:g} s, the server alive.")


def _row(model: dict[str, Any], held: int) -> list[str]:
    recovery = model["recovery_s"]
    verdict = "; ".join(model["failures"]) or "meets the rule"
    if not model["limit_reached"]:
        verdict += " (never ran out: a process per connection, or one at a time)"
    return [model["model"], f"{model['held_again']}/{held}", f"{model['cpu_percent']:.1f} %",
            "not in time" if recovery is None else f"{recovery:.2f} s",
            "yes" if model["alive"] else "no", f"{model['stderr_bytes']:,}", verdict]


def resources_section(run_dir: Path) -> Section | None:
    """The section, when the run folder has the probe's record."""
    path = run_dir / RECORD_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    table = Table(["model", "held answered", "CPU while refused", "new client after",
                   "alive", "stderr bytes", "verdict"],
                  [_row(model, record["held"]) for model in record["models"]],
                  numeric={1, 2, 3, 5})
    return Section("Resources: out of descriptors",
                   [_intro(record),
                    f"Probe record {path.name} ({record.get('created', '?')}, Python "
                    f"{record.get('python', '?')}).", table])
