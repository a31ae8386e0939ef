"""Instructions per request: the server under callgrind, counters zeroed and dumped around a window.

``valgrind --tool=callgrind --trace-children=yes`` runs the server (and any process it forks or
execs: prefork's workers, native's C binary); every thread is counted as it runs. At a window's
start ``callgrind_control --zero PID`` clears every process's counters, at its end
``callgrind_control --dump PID`` writes them out; ``vgdb`` reaches a server blocked in
``epoll_wait`` through ptrace, so the window is exactly the requests sent in it (plus a
constant: the tool's own wake-up, which the difference of two windows removes).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# callgrind runs CPython 20-50x slower (measured here: 2.2 s to import the servers, 0.1 s
# natively); every deadline that waits on the server under it is multiplied by this
SLOWDOWN = 40.0
CONTROL_TIMEOUT_S = 60.0
SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


class ProbeError(Exception):
    """A measurement could not be taken (the message says which step failed)."""


def valgrind_argv(out_dir: Path) -> list[str]:
    """The valgrind prefix that runs a command under callgrind, one output file per process."""
    return ["valgrind", "--tool=callgrind", "--trace-children=yes", "--quiet",
            "--dump-instr=no", "--compress-pos=no",
            f"--callgrind-out-file={out_dir}/callgrind.%p"]


def control(action: str, pid: int) -> None:
    """``callgrind_control --zero|--dump PID``; ProbeError when it fails."""
    try:
        done = subprocess.run(["callgrind_control", f"--{action}", str(pid)],
                              capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ProbeError(f"callgrind_control --{action} {pid}: {error}") from None
    if done.returncode != 0 or "OK" not in done.stdout:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ProbeError(f"callgrind_control --{action} {pid}: {tail[0]}")


def dump_total(path: Path) -> int:
    """The ``summary:`` (all events, here Ir only) of one callgrind dump file."""
    match = SUMMARY.search(path.read_text(errors="replace"))
    if match is None:
        raise ProbeError(f"{path.name}: no summary line")
    return int(match.group(1))


class CallgrindMeter:
    """Zero every process of the server at ``start``; dump and sum them at ``stop``."""

    name = "instructions"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.pids: list[int] = []
        self.seen: set[Path] = set()

    def start(self, pids: list[int]) -> None:
        self.pids = list(pids)
        self.seen = set(self.out_dir.glob("callgrind.*"))
        for pid in self.pids:
            control("zero", pid)

    def stop(self) -> dict[str, int]:
        for pid in self.pids:
            control("dump", pid)
        fresh = set(self.out_dir.glob("callgrind.*.*")) - self.seen
        dumped = {int(path.name.split(".")[1]) for path in fresh}
        if missing := set(self.pids) - dumped:
            raise ProbeError(f"no callgrind dump from pid {', '.join(map(str, sorted(missing)))}")
        return {"Ir": sum(dump_total(path) for path in fresh)}
