"""``python -m bench report RUN_DIR``: render a run folder's report again, never measuring.

It reads the trial records the runner wrote and writes answer.json, summary.csv, charts/*.png,
report.md and report.html, then prints the summary. The report opens with the answer (the
scorecard, one sentence per workload, how sure), then the verdicts and charts, then the
environment and the detail tables. The document is built by document.py.
"""

from __future__ import annotations

from bench.report.document import add_arguments, run

__all__ = ["add_arguments", "run"]
