"""Runs last (pytest takes files in name order): the suite left no child process, not even
a zombie (an unreaped child: a gateway exited but never waited for, say). The one exception is
multiprocessing's resource tracker, which the standard library keeps until the interpreter
exits, by design."""

from __future__ import annotations

import psutil


def test_the_suite_left_no_child_process_behind() -> None:
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if "multiprocessing.resource_tracker" not in command:
                left.append(f"{child.pid} {child.status()} {command[:100]}")
        except psutil.ZombieProcess:
            left.append(f"{child.pid} zombie")
        except psutil.NoSuchProcess:
            continue
    assert left == []
