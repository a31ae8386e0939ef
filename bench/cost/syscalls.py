"""System calls per request by name: ``strace -f -c`` attached to the server for a window.

strace attaches to every process of the server's tree (``-p`` each, ``-f`` for their threads
and for anything they start), counts every system call by name until SIGINT detaches it, and
writes the counts (``-U name,calls,errors``). The server runs natively: strace slows each
system call, not the code between them, and the counts do not depend on speed when one
request is in flight at a time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from bench import procs
from bench.cost.probe import ProbeError

ATTACH_TIMEOUT_S = 20.0
DETACH_GRACE_S = 20.0
POLL_S = 0.02


def parse_summary(text: str) -> dict[str, tuple[int, int]]:
    """``strace -c -U name,calls,errors`` output -> {name: (calls, errors)}, without ``total``."""
    counts: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit() or parts[0] == "total":
            continue
        errors = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
        counts[parts[0]] = (int(parts[1]), errors)
    return counts


class StraceMeter:
    """Attach strace at ``start``, detach at ``stop`` and read its counts."""

    name = "syscalls"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.windows = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = self.err = out_dir

    def start(self, pids: list[int], *, continued: bool = False) -> None:
        self.windows += 1
        self.out = self.out_dir / f"strace.{self.windows}"
        self.err = self.out_dir / f"strace.{self.windows}.err"
        argv = ["strace", "-f", "-c", "-U", "name,calls,errors", "-o", str(self.out)]
        for pid in pids:
            argv += ["-p", str(pid)]
        with self.err.open("wb") as err:
            self.proc = procs.spawn(argv, stderr=err)
        self._wait_attached(len(pids))

    def _wait_attached(self, count: int) -> None:
        deadline = time.monotonic() + ATTACH_TIMEOUT_S
        while self.err.read_text(errors="replace").count(" attached") < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProbeError(f"strace exited: {self.err.read_text(errors='replace')[-300:]}")
            if time.monotonic() > deadline:
                self._detach()
                raise ProbeError(f"strace did not attach within {ATTACH_TIMEOUT_S:g} s")
            time.sleep(POLL_S)

    def _detach(self) -> None:
        if self.proc is None:
            return
        stopped = procs.stop(self.proc, sig=signal.SIGINT, grace_s=DETACH_GRACE_S)
        self.proc = None
        if stopped.killed:
            raise ProbeError("strace did not detach on SIGINT")

    def stop(self) -> dict[str, int]:
        self._detach()
        if not self.out.exists():
            raise ProbeError(f"strace wrote no counts: {self.err.read_text(errors='replace')}")
        counts: dict[str, int] = {}
        for name, (calls, errors) in parse_summary(self.out.read_text()).items():
            counts[name] = calls
            if errors:
                counts[f"{name}!err"] = errors
        return counts
