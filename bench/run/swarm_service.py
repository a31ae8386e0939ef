"""The runner's end of the swarm service (``clients/service.py``): one long-lived swarm per run.

A swarm process per trial cost 0.9 s before its load began (interpreter start, numpy and
HdrHistogram imports, a spawned worker importing them again, connecting) and 0.3 s after it
ended (teardown, reaping); the service pays that once per run. It is started through
``procs.spawn`` like every child: pinned to the swarm's CPUs, in its own process group, killed
by the kernel if the runner dies (PR_SET_PDEATHSIG) and by ``procs.kill_all`` on the way out;
its workers die with it. It connects back to a Unix socket in a private temporary folder and
proves itself with a token from its environment.

Per trial: ``run(args)`` hands it the swarm's command-line arguments (``swarm_arguments``),
then the runner waits for ``started`` (the measured window, for the sampler), ``drained`` (the
load is over: the server may be stopped) and ``done`` (the record is written).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.connection
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import REPO_ROOT, procs
from bench.launch import child_env
from bench.load import ORDER, ServiceError, ServiceInterrupted, ServiceTimeout

__all__ = ["ORDER", "ServiceError", "ServiceInterrupted", "ServiceTimeout", "SwarmService"]

TOKEN_ENV = "CONCBENCH_SWARM_TOKEN"  # clients.service.TOKEN_ENV (bench/run imports no clients
# module that pulls numpy into the runner just for a name)
START_TIMEOUT_S = 60.0  # interpreter, imports and the first workers, on a busy machine
POLL_S = 0.05  # the longest a wait goes without looking at the stop request
QUIT_GRACE_S = 3.0  # after "quit", before SIGKILL


class SwarmService:
    """One ``python -m clients.service`` process and its socket, started on first use."""

    def __init__(self, cpus: Sequence[int] | None, log_path: Path, *, workers: int = 1,
                 root: Path = REPO_ROOT, python: str = sys.executable) -> None:
        self.cpus, self.log_path, self.workers = cpus, log_path, workers
        self.root, self.python = root, python
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        self._dir: str | None = None
        self._replies: dict[str, dict[str, Any]] = {}
        self.starts = 0  # processes started (a restart after a hung trial adds one)

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the service and wait for its hello (its first workers are up by then)."""
        self._dir = tempfile.mkdtemp(prefix="concbench-swarm-")
        path = os.path.join(self._dir, "socket")
        token = secrets.token_hex(16)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                self.proc = procs.spawn(
                    [self.python, "-m", "clients.service", "--connect", path,
                     "--workers", str(self.workers)],
                    cpus=self.cpus, cwd=self.root, env=child_env(self.root, {TOKEN_ENV: token}),
                    stdout=log, stderr=log)
            self.starts += 1
            deadline = time.monotonic() + START_TIMEOUT_S
            sock = self._accept(listener, deadline)
        finally:
            listener.close()
        self.conn = multiprocessing.connection.Connection(sock.detach())
        hello = self._receive(deadline, None)
        if hello.get("op") != "hello" or hello.get("token") != token:
            self.close()
            raise ServiceError("the swarm service's hello did not carry the token")

    def _accept(self, listener: socket.socket, deadline: float) -> socket.socket:
        listener.settimeout(POLL_S)
        while True:
            try:
                sock, _ = listener.accept()
                sock.settimeout(None)
                return sock
            except TimeoutError:
                pass
            self._check_alive()
            if time.monotonic() > deadline:
                self.close()
                raise ServiceError(f"the swarm service did not connect within "
                                   f"{START_TIMEOUT_S:g} s")

    def ensure_started(self) -> None:
        if self.proc is None:
            self.start()

    def close(self) -> None:
        """Tell the service to quit, stop it if it lingers, reap it, remove its socket."""
        if self.conn is not None:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send_bytes(json.dumps({"op": "quit"}).encode())
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            procs.stop(self.proc, sig=signal.SIGTERM, grace_s=QUIT_GRACE_S)
            self.proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._replies = {}

    def abandon(self) -> None:
        """Stop a service that is stuck in a run at once; the next run starts a new one."""
        if self.proc is not None:
            procs.stop(self.proc, sig=signal.SIGKILL, grace_s=1.0)
        self.close()

    def __enter__(self) -> SwarmService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one run ------------------------------------------------------------------------------

    def run(self, args: Sequence[str]) -> None:
        """Hand the service one trial's swarm arguments (started first if need be)."""
        self.ensure_started()
        assert self.conn is not None
        self._replies = {}
        try:
            self.conn.send_bytes(json.dumps({"op": "run", "args": list(args)}).encode())
        except OSError as error:
            self.abandon()
            raise ServiceError(f"the swarm service went away: {error}") from None

    def wait(self, op: str, deadline: float, stop: threading.Event | None = None
             ) -> dict[str, Any]:
        """The reply ``op`` of the current run (a later reply stands for it: ``done`` means
        drained too). ServiceTimeout past ``deadline`` (monotonic), ServiceInterrupted when
        ``stop`` is set, ServiceError if the service is gone."""
        wanted = ORDER.index(op)
        while True:
            for later in ORDER[wanted:]:
                if later in self._replies:
                    return self._replies[later]
            message = self._receive(deadline, stop)
            self._replies[str(message.get("op"))] = message

    def _receive(self, deadline: float, stop: threading.Event | None) -> dict[str, Any]:
        if self.conn is None:
            raise ServiceError("the swarm service is not running (it was stopped)")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceTimeout("the swarm service did not answer in time")
            if stop is not None and stop.is_set():
                raise ServiceInterrupted
            try:
                if self.conn.poll(min(remaining, POLL_S)):
                    return json.loads(self.conn.recv_bytes())
            except (EOFError, OSError) as error:
                status = self.proc.poll() if self.proc is not None else None
                self.abandon()
                raise ServiceError(f"the swarm service went away (status {status}): "
                                   f"{error or 'connection closed'}") from None
            self._check_alive()

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            status = self.proc.returncode
            self.abandon()
            raise ServiceError(f"the swarm service exited with status {status}: "
                               f"{_tail(self.log_path)}")


def _tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip() or "no output"
    except OSError:
        return "no output"
