"""valgrind and strace: whether they are here, and the one line that says how to get them."""

from __future__ import annotations

import shutil

# executable -> the Debian package that ships it
TOOLS = {"valgrind": "valgrind", "vgdb": "valgrind", "strace": "strace"}


def missing_packages(needed: tuple[str, ...] = tuple(TOOLS)) -> list[str]:
    """The Debian packages whose executables are not on PATH (sorted, no repeats)."""
    return sorted({TOOLS[name] for name in needed if shutil.which(name) is None})


def install_hint(packages: list[str]) -> str:
    """One line: what to install (``make cost`` installs them itself as root with apt)."""
    return (f"cost probe: needs {' and '.join(packages)}: install with "
            f"`apt-get install -y {' '.join(packages)}` (as root), or `make cost` as root")
