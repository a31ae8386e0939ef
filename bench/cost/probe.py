"""Instructions per request: the server under callgrind, counters zeroed and dumped around a window.

``valgrind --tool=callgrind --trace-children=yes`` runs the server (and any process it forks or
execs: prefork's workers, native's C binary); every thread is counted as it runs. At a window's
start ``zero`` clears every process's counters, at its end ``dump`` writes them out (and
zeroes them: the next window needs no zero of its own). These are callgrind's monitor commands,
sent with ``vgdb --pid PID`` (what ``callgrind_control`` runs, without its Perl start-up); vgdb
reaches a server blocked in ``epoll_wait`` through ptrace, so the window is exactly the requests
sent in it (plus a constant: the tool's own wake-up, which the difference of two windows
removes).

The server starts with instrumentation off (``--instr-atstart=no``: start-up runs about 3x
faster, as under valgrind's null tool) and is switched on (``--instr=on``) after the warm-up
of its first case, before anything is counted.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# callgrind runs CPython 20-50x slower (measured here: 2.2 s to import the servers, 0.1 s
# natively); every deadline that waits on the server under it is multiplied by this
SLOWDOWN = 40.0
CONTROL_TIMEOUT_S = 60.0
# how long vgdb waits for the server to poll its FIFO before it forces it through ptrace: the
# server is idle (blocked in a system call) whenever we ask, so waiting longer only costs time
INVOKE_MS = 10
COMMANDS = {"zero": "zero", "dump": "dump", "instr=on": "instrumentation on"}
SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


class ProbeError(Exception):
    """A measurement could not be taken (the message says which step failed)."""


def valgrind_argv(out_dir: Path) -> list[str]:
    """The valgrind prefix that runs a command under callgrind, one output file per process."""
    return ["valgrind", "--tool=callgrind", "--trace-children=yes", "--quiet",
            "--instr-atstart=no",
            "--dump-instr=no", "--compress-pos=no",
            f"--callgrind-out-file={out_dir}/callgrind.%p"]


def control(action: str, pid: int) -> None:
    """Callgrind's monitor command ``action`` (zero, dump, instr=on) to process ``pid``;
    ProbeError when it fails."""
    argv = ["vgdb", f"--pid={pid}", f"--max-invoke-ms={INVOKE_MS}", *COMMANDS[action].split()]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ProbeError(f"vgdb {action} to {pid}: {error}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ProbeError(f"vgdb {action} to {pid}: {tail[0]}")


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
        self.instrumented: set[int] = set()
        self.just_dumped = False  # counters zero since the last dump, nothing run between

    def start(self, pids: list[int], *, continued: bool = False) -> None:
        """Zero the counters; ``continued``: this window follows the last one directly (no
        request between), whose dump zeroed them already."""
        fresh = pids != self.pids or not (continued and self.just_dumped)
        self.pids = list(pids)
        self.seen = set(self.out_dir.glob("callgrind.*"))
        for pid in self.pids:
            if pid not in self.instrumented:
                control("instr=on", pid)
                self.instrumented.add(pid)
            if fresh:
                control("zero", pid)

    def stop(self) -> dict[str, int]:
        for pid in self.pids:
            control("dump", pid)
        self.just_dumped = True
        fresh = set(self.out_dir.glob("callgrind.*.*")) - self.seen
        dumped = {int(path.name.split(".")[1]) for path in fresh}
        if missing := set(self.pids) - dumped:
            raise ProbeError(f"no callgrind dump from pid {', '.join(map(str, sorted(missing)))}")
        return {"Ir": sum(dump_total(path) for path in fresh)}
