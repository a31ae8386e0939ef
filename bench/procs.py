"""Child processes that never outlive the runner.

Every child starts through a tiny trampoline that pins it to its CPUs, asks the kernel to
kill it if the runner dies (PR_SET_PDEATHSIG, even on SIGKILL), and then execs the real
command, in a session (process group) of its own, so that stopping it stops its whole tree.
Live children are registered; an ``atexit`` hook kills any that are left.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_TRAMPOLINE = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(70)
if sys.argv[2]:
    try:
        os.sched_setaffinity(0, {int(cpu) for cpu in sys.argv[2].split(",")})
    except OSError as error:
        print(f"cannot pin to CPUs {sys.argv[2]}: {error}", file=sys.stderr)
        os._exit(71)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as error:
    print(f"cannot run {sys.argv[3]}: {error}", file=sys.stderr)
    os._exit(127)
"""

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Stopped:
    """How a child tree ended."""

    returncode: int | None
    killed: bool
    seconds: float
    strays: int = 0


def spawn(command: Sequence[str], *, cpus: Iterable[int] | None = None, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, stdout: IO[Any] | int = subprocess.DEVNULL,
          stderr: IO[Any] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start ``command`` pinned to ``cpus``, in its own process group, tied to our life."""
    pinned = ",".join(str(cpu) for cpu in sorted(cpus)) if cpus is not None else ""
    argv = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), pinned, *command]
    with _LOCK:  # registering under the lock: kill_all() never misses a child being born
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True, close_fds=True)
        _LIVE[proc.pid] = proc
    return proc


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (those still alive)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _outside_group(members: Iterable[psutil.Process], pgid: int) -> list[psutil.Process]:
    """Members that left the process group (setsid): a group signal does not reach them.
    (Signalling the others twice could kill a Python process that is already exiting.)"""
    outside = []
    for member in members:
        try:
            if os.getpgid(member.pid) != pgid:
                outside.append(member)
        except (ProcessLookupError, PermissionError):
            continue
    return outside


def stop(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, grace_s: float = 3.0,
         whole_group: bool = True) -> Stopped:
    """Stop a child and everything below it: ``sig`` (to its whole process group, or to the
    child alone when ``whole_group`` is false, as the launch contract has it), ``grace_s`` to
    exit, then SIGKILL for whatever is left of the tree; reap."""
    start = time.monotonic()
    members = tree(proc.pid)
    killed = False
    if proc.poll() is None or members:
        if whole_group:
            _signal_group(proc.pid, sig)
            _signal_all(_outside_group(members, proc.pid), sig)
        elif proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            killed = True
        _gone, alive = psutil.wait_procs(
            [m for m in members if m.pid != proc.pid],
            timeout=max(0.0, grace_s - (time.monotonic() - start)))
        if killed or alive:
            killed = True
            _signal_group(proc.pid, signal.SIGKILL)
            _signal_all([*tree(proc.pid), *alive], signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            psutil.wait_procs(alive, timeout=2)
    with _LOCK:
        _LIVE.pop(proc.pid, None)
    return Stopped(proc.returncode, killed, time.monotonic() - start)


def kill_all() -> None:
    """SIGKILL every live child tree we started, and reap them (atexit, second Ctrl-C)."""
    with _LOCK:
        children = list(_LIVE.values())
        _LIVE.clear()
    for proc in children:
        members = tree(proc.pid)
        _signal_group(proc.pid, signal.SIGKILL)
        _signal_all(members, signal.SIGKILL)
    for proc in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def adopt(proc: subprocess.Popen[bytes]) -> None:
    """Count a child someone else started (an execnet gateway's process) as ours: kill_strays
    leaves it alone and kill_all kills it."""
    with _LOCK:
        _LIVE[proc.pid] = proc


def forget(proc: subprocess.Popen[bytes]) -> None:
    """An adopted child that has been reaped."""
    with _LOCK:
        _LIVE.pop(proc.pid, None)


def live_children() -> list[int]:
    """Pids of the children we started that have not been stopped yet."""
    with _LOCK:
        return list(_LIVE)


def become_subreaper() -> bool:
    """Adopt orphaned descendants (a server that double-forks), so we can still reap them."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_strays(grace_s: float = 0.5) -> list[str]:
    """Reap or kill our descendants that are not registered children: orphans adopted as
    subreaper (a server's double fork; a helper process of the swarm finishing its exit).
    Zombies are reaped and processes that exit within ``grace_s`` are let go, silently; the
    ones still running are killed and described. Only for the CLI process, which starts
    nothing else."""
    registered = set(live_children())
    strays = []
    for child in psutil.Process().children(recursive=False):
        if child.pid not in registered:
            strays.extend(tree(child.pid))
    _gone, alive = psutil.wait_procs(strays, timeout=grace_s)
    described = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=2)
    for stray in strays:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(stray.pid, os.WNOHANG)
    return described


atexit.register(kill_all)
