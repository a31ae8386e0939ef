"""classics.json: every experiment's finding for one run folder, versioned."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from bench.analysis.frames import Run, load_run
from bench.classics import convoy, cores, echo_table, idle, omission, open_closed, overload
from bench.classics.common import VERDICTS, Finding
from bench.store import atomic_write_json, utc_now

FORMAT = 1
FILE_NAME = "classics.json"
# in the order: the report shows them so
EXPERIMENTS: tuple[ModuleType, ...] = (idle, convoy, cores, echo_table, omission, overload,
                                        open_closed)


def findings(run: Run) -> list[Finding]:
    """Every experiment's finding (an experiment whose analysis fails is a bug: it raises)."""
    return [module.analyse(run) for module in EXPERIMENTS]


def document(run: Run) -> dict[str, Any]:
    """classics.json's content."""
    found = findings(run)
    environment = run.meta.get("environment") or {}
    return {"format": FORMAT, "created": utc_now(), "run_id": run.meta.get("run_id"),
            "machine": {key: environment.get(key) for key in
                        ("cpu_model", "cpu_count", "cpus_usable", "kernel", "memory_bytes")},
            "interpreters": environment.get("interpreters"),
            "verdicts": {verdict: sum(f.verdict == verdict for f in found)
                         for verdict in VERDICTS},
            "experiments": [f.to_dict() for f in found]}


def write(run_dir: Path) -> dict[str, Any]:
    """Analyse ``run_dir`` and write its classics.json; the content."""
    content = document(load_run(run_dir))
    atomic_write_json(Path(run_dir) / FILE_NAME, content)
    return content
