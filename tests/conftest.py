"""Shared fixtures.

Server models under test (``running_server``, the ``server`` fixture): any test that takes
``server_spec`` or ``server`` runs once per model variant: every entry of
``servers.available_models()`` plus the option variants in ``VARIANTS``. A model module may
declare ``CONFORMANCE_XFAIL = {"test_name": "reason"}`` for rules it cannot meet; those tests
are marked ``xfail(strict=True)`` for it, so a model that starts meeting a rule is noticed.
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
import pytest

import servers

READY_TIMEOUT = 15.0  # seconds a model may take to print READY (native compiles on first use)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a test is done with a server

# extra option variants per model: variant suffix -> options (id "MODEL-SUFFIX")
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "epoll": {"edge": ("--trigger", "edge")},
    "asyncio": {"streams": ("--api", "streams")},
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_spec" not in metafunc.fixturenames:
        return
    test_name = metafunc.function.__name__
    params = []
    for spec in model_specs():
        reason = spec.xfail_reason(test_name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(spec, id=spec.id, marks=marks))
    metafunc.parametrize("server_spec", params)


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
        self.stdout_extra += _read_available(self.proc.stdout)
        return self.proc.returncode


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


@pytest.fixture
def server(server_spec: ModelSpec) -> Iterator[ServerProcess]:
    """The model under test, running; after the test it must still be alive (rule 6) and
    must not have written anything to stdout besides READY (launch contract)."""
    with running_server(server_spec.model, *server_spec.args) as process:
        yield process
        assert process.alive(), f"the server exited (status {process.proc.returncode})"
        process.stop()
        assert process.stdout_extra == b"", f"stdout after READY: {process.stdout_extra[:200]!r}"
