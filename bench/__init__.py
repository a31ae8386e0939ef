"""concbench's harness: the pipeline from a scenario to an answer.

    run/        scenario -> plan of trials -> each trial (server via the launch contract,
                swarm, psutil sampling) -> trial records in a run folder (store.py)
    analysis/   trial records -> frames, validity, verdicts, sweeps, histograms
    report/     analysis -> report.md, report.html, summary.csv, charts
    regress/    the CI gate: head's servers against a base revision's, side by side
    selfcheck/  the instrument checks itself: the swarm against a minimal C client

``store.py`` (run folders, versioned records), ``environment.py`` (the machine's metadata)
and ``procs.py`` (child processes) are shared by the stages. ``cli.py`` is the one command
line, ``python -m bench VERB``. bench imports ``protocol``, ``servers`` and ``clients``;
nothing imports bench back, and no stage imports a later one.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout: servers/, clients/, results/
