"""Runs last (pytest takes files in name order): the suite left no child process, not even
a zombie (an unreaped child: a gateway exited but never waited for, say)."""

from __future__ import annotations

import psutil


def test_the_suite_left_no_child_process_behind() -> None:
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            left.append(f"{child.pid} {child.status()} {' '.join(child.cmdline())[:100]}")
        except psutil.ZombieProcess:
            left.append(f"{child.pid} zombie")
        except psutil.NoSuchProcess:
            continue
    assert left == []
