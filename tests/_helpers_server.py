"""Start server models as subprocesses through the launch contract (docs/protocol.md).

``running_server(model, *options)`` runs ``python -m servers MODEL OPTIONS`` through the
harness's launch-contract client (``bench.launch``): the ``READY host port`` line within a
deadline, and always a stop and a reap: SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds.
``model_specs()`` lists the model variants the conformance suite runs over.
``need(model)`` skips a test where the model cannot run; ``run_launcher`` and ``assert_refused``
run the launcher to the end and check a setting it must refuse.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil
import pytest
from _helpers import close_all, connect_many

import servers
from bench.launch import LaunchedServer, LaunchFailed, child_env, server_argv
from protocol import MAX_WORK_ITERATIONS, Op

READY_TIMEOUT = 15.0  # seconds a model may take to print READY (native compiles on first use)
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when a test is done with a server

# extra option variants per model: variant suffix -> options (id "MODEL-SUFFIX")
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "epoll": {"edge": ("--trigger", "edge")},
    "asyncio": {"streams": ("--api", "streams")},
    "reactor": {"offload-all": ("--offload-from", "0")},  # every WORK through the pool
    "anyio": {"trio": ("--backend", "trio")},
    "socketserver": {"forking": ("--mixin", "forking")},
}



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


class ServerProcess:
    """A model running as a subprocess (``python -m servers MODEL ...``), started and stopped
    by the harness's launch-contract client (``bench.launch.LaunchedServer``)."""

    def __init__(self, launched: LaunchedServer) -> None:
        self.launched = launched
        self.argv = launched.argv
        self.proc = launched.proc
        self.host, self.port = "", 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def stdout_extra(self) -> bytes:
        """Anything on stdout besides the READY line (the contract allows nothing)."""
        return self.launched.stdout_extra()

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
        return self.launched.alive()

    def stderr_text(self) -> str:
        return self.launched.stderr_text()

    def stop(self, signum: int = signal.SIGTERM, grace: float = STOP_GRACE) -> int | None:
        """Signal the server, SIGKILL it after ``grace`` seconds, reap it; the exit status."""
        return self.launched.stop(grace, sig=signum).returncode

    def read_stdout(self) -> bytes:
        """Whatever the server wrote to stdout besides READY (it should be nothing)."""
        return self.stdout_extra


@contextlib.contextmanager
def running_server(model: str, *args: str,
                   ready_timeout: float = READY_TIMEOUT) -> Iterator[ServerProcess]:
    """Start ``python -m servers MODEL ARGS`` and wait for READY; always stop and reap it."""
    with tempfile.TemporaryDirectory(prefix="concbench-server-") as folder:
        logs = Path(folder)
        launched = LaunchedServer(server_argv(model, args), logs / "out", logs / "err",
                                  env=child_env())
        server = ServerProcess(launched)
        try:
            try:
                server.host, server.port = launched.wait_ready(ready_timeout)
            except LaunchFailed as error:
                raise ServerStartError(str(error)) from None
            yield server
        finally:
            server.stop()
            stderr = server.stderr_text()
            if stderr:  # shown by pytest with a failing test's report
                print(f"--- stderr of {' '.join(server.argv[2:])} ---\n{stderr}")


class ServerStartError(RuntimeError):
    """The model did not come up as the launch contract says."""


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


def need(model: str) -> None:
    """Skip the test where ``model`` cannot run here, saying why."""
    reason = servers.unavailable_reason(model)
    if reason is not None:
        pytest.skip(f"{model} is not available here: {reason}")


def run_launcher(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m servers ARGS`` to its end (for the settings it must refuse)."""
    return subprocess.run([sys.executable, "-m", "servers", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    """A clear refusal: non-zero exit, a message (not a traceback) on stderr, no READY."""
    assert result.returncode != 0
    assert "READY" not in result.stdout
    assert result.stderr.strip(), "no message on stderr"
    assert "Traceback" not in result.stderr, result.stderr


def sigterm_during_work(server: ServerProcess) -> tuple[int, float]:
    """Three connections each running a MAX_WORK_ITERATIONS WORK (about 0.7 s each, or more),
    then SIGTERM: the server's exit status and the seconds it took to exit (the test fails
    if it still runs 2 s after)."""
    clients = connect_many(*server.address, 3)
    try:
        for client in clients:
            client.send_request(Op.WORK, MAX_WORK_ITERATIONS)
        time.sleep(0.3)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            status = server.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 2 s after SIGTERM")
        return status, time.monotonic() - started
    finally:
        close_all(clients)
