"""``concbench VERB``: the installed command, the same verbs as ``python -m bench VERB``.

The four folders the code imports by their own names live inside this package once installed
(see ``concbench/__init__.py``); this puts the folder that holds them first on ``sys.path``,
then hands over to ``bench.cli``. Child processes get the same folder on their ``PYTHONPATH``
from ``bench.launch.child_env`` (``bench.REPO_ROOT`` is that folder).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


def code_root() -> Path:
    """The folder that holds ``bench/``: inside this package when installed from a wheel, the
    checkout when installed in editable mode (setup.py maps ``concbench.bench`` there)."""
    spec = importlib.util.find_spec("concbench.bench")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("concbench is installed without its bench package")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    root = str(code_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.cli import main as bench_main

    return bench_main(argv, prog="concbench")


if __name__ == "__main__":
    sys.exit(main())
