"""Start server models as subprocesses through the launch contract (PROTOCOL.md).

``running_server(model, *options)`` runs ``python -m servers MODEL OPTIONS``, reads exactly
one ``READY host port`` line from its stdout within a deadline (stderr goes to a temporary
file), and always stops and reaps it: SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds.
``model_specs()`` lists the model variants the conformance suite runs over.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import IO

import psutil

import servers

READY_TIMEOUT = 15.0  # seconds a model may take to print READY (native compiles on first use)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a test is done with a server

# extra option variants per model: variant suffix -> options (id "MODEL-SUFFIX")
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "epoll": {"edge": ("--trigger", "edge")},
    "asyncio": {"streams": ("--api", "streams")},
    "reactor": {"offload-all": ("--offload-from", "0")},  # every WORK through the pool
}

_READY = re.compile(rb"READY (\S+) (\d+)")


@dataclass(frozen=True)
class ModelSpec:
    """One model variant to test: a registry name plus options."""

    id: str
    model: str
    args: tuple[str, ...] = ()

    def xfail_reason(self, test_name: str) -> str | None:
        """Why this model is expected to fail ``test_name`` (its ``CONFORMANCE_XFAIL``)."""
        return getattr(servers.load(self.model), "CONFORMANCE_XFAIL", {}).get(test_name)


@cache
def model_specs() -> tuple[ModelSpec, ...]:
    """Every available model, then its variants, in registry order."""
    specs = []
    for name in servers.available_models():
        specs.append(ModelSpec(name, name))
        for suffix, args in VARIANTS.get(name, {}).items():
            specs.append(ModelSpec(f"{name}-{suffix}", name, args))
    return tuple(specs)


class ServerStartError(RuntimeError):
    """The model did not come up as the launch contract says."""


@dataclass
class ServerProcess:
    """A model running as a subprocess (``python -m servers MODEL ...``)."""

    argv: list[str]
    proc: subprocess.Popen[bytes]
    stderr_file: IO[bytes]
    host: str = ""
    port: int = 0
    stdout_extra: bytes = field(default=b"")  # anything on stdout besides the READY line

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def usage(self) -> tuple[int, int, int]:
        """(open fds, threads, RSS bytes) of the server and any processes it forked."""
        root = self.process()
        fds = threads = rss = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                fds += proc.num_fds()
                threads += proc.num_threads()
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return fds, threads, rss

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, grace: float = STOP_GRACE) -> int:
        """Signal the server, SIGKILL it after ``grace`` seconds, reap it; the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.read_stdout()
        return self.proc.returncode

    def read_stdout(self) -> bytes:
        """Collect whatever the server wrote to stdout since READY (it should be nothing)."""
        self.stdout_extra += _read_available(self.proc.stdout)
        return self.stdout_extra


def _read_available(stream: IO[bytes] | None) -> bytes:
    """What can be read from a pipe now, without blocking."""
    if stream is None or stream.closed:
        return b""
    data = b""
    fd = stream.fileno()
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def _await_ready(server: ServerProcess, timeout: float) -> None:
    """Read exactly one ``READY host port`` line from the server's stdout, within ``timeout``."""
    assert server.proc.stdout is not None
    fd = server.proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerStartError(f"no READY line within {timeout} s; stdout: {received!r}")
        if not select.select([fd], [], [], remaining)[0]:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            status = server.proc.wait(STOP_GRACE)
            raise ServerStartError(f"exited with status {status} before READY; "
                                   f"stdout: {received!r}; stderr: {server.stderr_text()}")
        received += chunk
    line, _, server.stdout_extra = received.partition(b"\n")
    match = _READY.fullmatch(line)
    if match is None:
        raise ServerStartError(f"first stdout line is not 'READY host port': {line!r}")
    server.host, server.port = match[1].decode(), int(match[2])


@contextlib.contextmanager
def running_server(model: str, *args: str,
                   ready_timeout: float = READY_TIMEOUT) -> Iterator[ServerProcess]:
    """Start ``python -m servers MODEL ARGS`` and wait for READY; always stop and reap it."""
    argv = [sys.executable, "-m", "servers", model, *args]
    with tempfile.TemporaryFile() as stderr_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, bufsize=0)
        server = ServerProcess(argv, proc, stderr_file)
        try:
            _await_ready(server, ready_timeout)
            yield server
        finally:
            server.stop()
            if proc.stdout is not None:
                proc.stdout.close()
            stderr = server.stderr_text()
            if stderr:  # shown by pytest with a failing test's report
                print(f"--- stderr of {' '.join(argv[2:])} ---\n{stderr}")


class SharedServer:
    """One model process shared by consecutive tests, restarted if a test killed it."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._stack = contextlib.ExitStack()
        self._process: ServerProcess | None = None

    def get(self) -> ServerProcess:
        """The running server (started now if it is not running)."""
        if self._process is None or not self._process.alive():
            self.close()
            self._process = self._stack.enter_context(
                running_server(self.spec.model, *self.spec.args))
        return self._process

    def close(self) -> None:
        """Stop and reap the server, if any."""
        self._process = None
        self._stack.close()
