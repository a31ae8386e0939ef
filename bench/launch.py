"""The client side of the launch contract (docs/protocol.md): start a model, await READY, stop it.

One implementation for the runner, the swarm self-check and the tests: ``python -m servers
MODEL`` started through ``procs.spawn`` (pinned, in its own process group, dying with us), its
standard output and error in files (a pipe nobody reads could block it), the READY line read
with a deadline, then SIGTERM to the server alone and SIGKILL for whatever is left after the
grace period, reaped.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import REPO_ROOT, procs
from bench.sampling import TreeSampler
from protocol.launch import BadReady, ReadyWatch

POLL_S = 0.005  # how often the READY wait looks at the output file


class LaunchFailed(Exception):
    """The model did not come up as the launch contract says (the message says how)."""


class LaunchInterrupted(Exception):
    """The wait for READY was stopped from outside (Ctrl-C)."""


def child_env(root: Path = REPO_ROOT, extra: Mapping[str, str] | None = None, *,
              write_bytecode: bool = True) -> dict[str, str]:
    """Our environment with ``root`` first on PYTHONPATH, so its packages import; ``extra``
    on top. ``write_bytecode=False`` keeps a checked-out worktree free of __pycache__."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def server_argv(model: str, args: Sequence[str] = (), interpreter: str = sys.executable
                ) -> list[str]:
    """The launch contract's command line for one model."""
    return [interpreter, "-m", "servers", model, *args]


class LaunchedServer:
    """One model process, from spawn to reaped exit."""

    def __init__(self, argv: Sequence[str], out_path: Path, err_path: Path, *,
                 cpus: tuple[int, ...] | None = None, cwd: Path = REPO_ROOT,
                 env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.out_path, self.err_path = out_path, err_path
        with out_path.open("wb") as out, err_path.open("wb") as err:
            self.proc = procs.spawn(self.argv, cpus=cpus, cwd=cwd,
                                    env=child_env(cwd) if env is None else env,
                                    stdout=out, stderr=err)
        self.started = time.monotonic()
        self._watch = ReadyWatch()
        self._read_pos = 0
        self.stopped: procs.Stopped | None = None
        self.lost: str | None = None  # a server here is never lost (bench/hosts' can be)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        if self._watch.address is None:
            raise LaunchFailed("the server has not printed READY")
        return self._watch.address

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sampler(self, t0: float) -> TreeSampler:
        """A psutil sampler of its process tree, on trial time ``t0`` (monotonic seconds)."""
        return TreeSampler(self.pid, t0)

    def _read_stdout(self) -> tuple[str, int] | None:
        with self.out_path.open("rb") as out:
            out.seek(self._read_pos)
            data = out.read()
        self._read_pos += len(data)
        return self._watch.feed(data)

    def wait_ready(self, timeout_s: float, stop: threading.Event | None = None
                   ) -> tuple[str, int]:
        """``(host, port)`` from the READY line, within ``timeout_s`` of now."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = self._read_stdout()
            except BadReady as error:
                raise LaunchFailed(f"server printed a {error}") from None
            if found is not None:
                return found
            if self.proc.poll() is not None and self._read_stdout() is None:
                raise LaunchFailed(f"server exited with status {self.proc.returncode} before "
                                   f"READY: {self.stderr_tail(500) or 'no stderr'}")
            if stop is not None and stop.is_set():
                raise LaunchInterrupted
            if time.monotonic() > deadline:
                raise LaunchFailed(f"server did not print READY within {timeout_s:g} s")
            time.sleep(POLL_S)

    def stdout_extra(self) -> bytes:
        """Whatever the server printed on stdout besides READY (the contract allows nothing)."""
        self._read_stdout()
        return self._watch.extra

    def stderr_text(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def stderr_tail(self, chars: int = 1500) -> str:
        return self.stderr_text()[-chars:].strip()

    def stop(self, grace_s: float = 3.0, *, sig: int = signal.SIGTERM) -> procs.Stopped:
        """SIGTERM (or ``sig``) to the server alone, as the contract has it, then SIGKILL for
        whatever of its tree is left after ``grace_s``; reaped. Idempotent: later calls
        return the first result."""
        if self.stopped is None:
            self.stopped = procs.stop(self.proc, sig=sig, grace_s=grace_s, whole_group=False)
        return self.stopped
