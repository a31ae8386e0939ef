"""`native`: a small single-threaded C epoll server, the "speed of light" reference line.

It speaks the whole protocol as ``protocol.ServerSession`` does, byte for byte (WORK's
loop runs in C, so WORK figures are not comparable with the Python models'). The C source
(``servers/native/server.c``) is compiled on first use with the system C compiler (``$CC``,
else ``cc``, ``gcc`` or ``clang``) into ``servers/native/build/`` and rebuilt when the source
is newer. The model is unavailable where there is no compiler (``--list`` says so).

Under ``python -m servers native`` the launcher has listened and printed READY; ``serve``
then ``execv``s the binary with the listening socket's descriptor (``--fd N``), so the
process *is* the C server: psutil sees it and signals reach it directly. Called from any
other program, ``serve`` runs the binary as a child instead: it is stopped and reaped when
``serve`` ends (``Shutdown`` or any other exception), and gets SIGTERM if its parent dies.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

DESCRIPTION = "C, one thread, epoll: the native reference line (WORK computed in C)"
SOURCE = Path(__file__).with_name("native") / "server.c"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
COMPILE_TIMEOUT_S = 120.0
STOP_GRACE_S = 2.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class BuildError(RuntimeError):
    """The C source could not be compiled."""


def find_compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` if set and found, else cc, gcc or clang."""
    from_env = shlex.split(os.environ.get("CC", ""))
    if from_env and shutil.which(from_env[0]):
        return from_env
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return [path]
    return None


def _build_dir(source: Path) -> Path:
    """``build/`` beside the source, or a per-user cache folder if that is not writable."""
    beside = source.parent / "build"
    try:
        beside.mkdir(parents=True, exist_ok=True)
    except OSError:
        beside = None
    if beside is not None and os.access(beside, os.W_OK):
        return beside
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path(tempfile.gettempdir()))
    fallback = cache / f"concbench-{os.getuid()}" / source.parent.name
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def binary_path(source: Path) -> Path:
    """Where the executable built from ``source`` lives."""
    return _build_dir(source) / source.stem


def is_current(source: Path, binary: Path) -> bool:
    """True when ``binary`` exists and is not older than ``source``."""
    try:
        return binary.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False


def build(source: Path, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile ``source`` (if the binary is missing or older) and return the binary's path.

    The compiler writes to a private temporary name that is then renamed into place, so
    concurrent builds (parallel tests, two tools) never see a half-written binary.
    """
    binary = binary_path(source)
    if is_current(source, binary):
        return binary
    compiler = find_compiler()
    if compiler is None:
        raise BuildError("no C compiler found (set $CC, or install cc, gcc or clang)")
    partial = binary.with_name(f".{binary.name}.{os.getpid()}.partial")
    command = [*compiler, *CFLAGS, *extra_flags, "-o", str(partial), str(source)]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=COMPILE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        partial.unlink(missing_ok=True)
        raise BuildError(f"cannot run {shlex.join(command)}: {error}") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"{shlex.join(command)} failed:\n{result.stderr.strip()}")
    os.replace(partial, binary)
    return binary


def build_server() -> Path:
    """The native server's executable, built if needed."""
    return build(SOURCE)


def unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux (epoll, signalfd, timerfd)"
    if not SOURCE.is_file():
        return f"source {SOURCE} is missing"
    if find_compiler() is None and not is_current(SOURCE, binary_path(SOURCE)):
        return "no C compiler found (set $CC, or install cc, gcc or clang)"
    return None


def check(options: argparse.Namespace) -> None:
    """Build before listening, so a failed build is a clear message and a non-zero exit."""
    try:
        build_server()
    except BuildError as error:
        raise SystemExit(f"native: cannot build the server: {error}") from None


def _launched_by_servers_main() -> bool:
    """True in the ``python -m servers`` process, where replacing the process is right."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "servers.__main__"


def _exec(binary: Path, fd: int) -> None:
    """Become the C server. SIGTERM/SIGINT stay blocked across ``execv``, so one sent during
    the hand-over stays pending until the server reads it from its signalfd."""
    sys.stdout.flush()
    sys.stderr.flush()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        os.execv(binary, [str(binary), "--fd", str(fd)])
    except OSError as error:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise SystemExit(f"native: cannot start {binary}: {error}") from None


def _run_child(binary: Path, fd: int) -> None:
    """Run the C server as a child on ``fd`` until it exits; stop and reap it on any exit."""
    command = [str(binary), "--fd", str(fd), "--die-with-parent", str(os.getpid())]
    child = subprocess.Popen(command, pass_fds=(fd,))
    try:
        code = child.wait()
        if code != 0:
            raise SystemExit(f"native: the server exited with status {code}")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    binary = build_server()
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    if _launched_by_servers_main():
        _exec(binary, fd)
    else:
        _run_child(binary, fd)
