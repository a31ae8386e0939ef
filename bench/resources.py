"""``python -m bench resources``: how each model behaves out of descriptors.

The probe of docs/protocol.md's "Out of resources" rule, shared by the conformance test
(test_out_of_descriptors_keeps_serving in tests/test_conformance.py) and the report's
"Resources" section (bench/report/resources.py).
For one model it starts the server, limits the descriptors of its processes alone to
``FD_LIMIT`` (soft and hard, so the launcher cannot raise them), then:

1. opens ``CONNECTIONS`` connections, each asking one ECHO: the server holds what its
   descriptors allow, the rest wait in the listen backlog;
2. waits for the first ``HELD`` answers, from whichever connections the server took (with
   several listening sockets, as SO_REUSEPORT models have, they need not be the first ten
   to connect): these are the connections it holds;
3. measures the CPU time of the server's processes over ``CPU_WINDOW_S`` while it cannot
   accept (its listening socket stays readable): a model that spins shows a full core;
4. asks the ``HELD`` connections again: do they still get answers;
5. closes every connection and times how long a new client waits for its first answer.

Exit status: 0 every model meets the rule, 1 some model does not, 2 the probe could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import REPO_ROOT, procs
from bench.launch import LaunchedServer, LaunchFailed, child_env, server_argv
from bench.store import atomic_write_json, utc_now
from protocol import FrameDecoder, Op, Status, encode_request

SCHEMA = 1
RECORD_FILE = "resources.json"  # in a run folder, beside cost.json
FD_LIMIT = 64  # descriptors each server process may have
CONNECTIONS = 150  # well past what FD_LIMIT lets a process hold
HELD = 10  # the first connections, which the server holds and must keep answering
CPU_WINDOW_S = 0.5  # a spinning model shows ~100 % of a core within it
ANSWER_TIMEOUT_S = 5.0  # for each round of answers from the held connections
RECOVERY_TIMEOUT_S = 6.0  # a new client's wait for an answer once everyone has left
READY_TIMEOUT_S = 15.0
# the rule's bounds (docs/protocol.md): CPU "near zero" with a margin for a shared machine
# (a spinning model shows ~100 % of a core per process), accepting "within about a second"
MAX_CPU_PERCENT = 20.0
MAX_RECOVERY_S = 3.0


@dataclass
class Outcome:
    """What one model did out of descriptors."""

    model: str  # the variant's id, e.g. "epoll-edge"
    args: list[str]
    alive: bool  # still running at the end
    limit_reached: bool  # some process of it held FD_LIMIT - 2 descriptors or more
    processes: int  # processes in its tree while refusing (a fork per connection: many)
    held_first: int  # connections answered first (at most HELD): those the server holds
    held_again: int  # of those, answered again after the CPU window
    cpu_percent: float  # CPU of its processes while refusing, % of one core
    recovery_s: float | None  # a new client's first answer after all left; None: not in time
    stderr_bytes: int  # what it wrote to stderr over the whole probe

    def failures(self) -> list[str]:
        """How it breaks the rule (empty: it meets it)."""
        found = []
        if not self.alive:
            found.append("the server exited")
        if self.held_again < HELD:
            found.append(f"answered {self.held_again} of the {HELD} connections it holds")
        if self.cpu_percent > MAX_CPU_PERCENT:
            found.append(f"spins: {self.cpu_percent:.0f} % CPU while it cannot accept")
        if self.recovery_s is None:
            found.append(f"no new client served within {RECOVERY_TIMEOUT_S:g} s")
        elif self.recovery_s > MAX_RECOVERY_S:
            found.append(f"a new client waited {self.recovery_s:.1f} s")
        return found


class _Client:
    """One blocking connection with a decoder; every wait has a deadline."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=ANSWER_TIMEOUT_S)
        self.decoder = FrameDecoder()

    def ask(self, payload: bytes) -> bool:
        try:
            self.sock.sendall(encode_request(Op.ECHO, 0, payload))
            return True
        except OSError:
            return False

    def take(self, data: bytes, payload: bytes) -> bool:
        """Feed what arrived; True once the echo of ``payload`` is whole."""
        self.decoder.feed(data)
        frame = self.decoder.next_frame()
        return frame is not None and frame.code == Status.OK and frame.payload == payload

    def answered(self, payload: bytes, deadline: float) -> bool:
        """True once the echo of ``payload`` came back before ``deadline``."""
        while (frame := self.decoder.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except OSError:
                return False
            if not data:
                return False
            self.decoder.feed(data)
        return frame.code == Status.OK and frame.payload == payload

    def close(self) -> None:
        self.sock.close()


def limit_descriptors(pid: int, limit: int = FD_LIMIT) -> None:
    """Soft and hard RLIMIT_NOFILE of every process of the server (children inherit it)."""
    for proc in procs.tree(pid):
        with contextlib.suppress(psutil.Error):
            proc.rlimit(psutil.RLIMIT_NOFILE, (limit, limit))


def _cpu_seconds(members: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in members:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _most_fds(members: Sequence[psutil.Process]) -> int:
    most = 0
    for proc in members:
        with contextlib.suppress(psutil.Error):
            most = max(most, proc.num_fds())
    return most


def _first_answered(clients: Sequence[_Client], payloads: Sequence[bytes], wanted: int
                    ) -> list[_Client]:
    """The first ``wanted`` clients (at most) whose echo came back within the timeout."""
    answered: list[_Client] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        for client, payload in zip(clients, payloads, strict=True):
            selector.register(client.sock, selectors.EVENT_READ, (client, payload))
        while len(answered) < wanted and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                client, payload = key.data
                try:
                    data = client.sock.recv(65536)
                except OSError:
                    data = b""
                if not data or client.take(data, payload):
                    selector.unregister(client.sock)
                    if data:
                        answered.append(client)
    return answered[:wanted]


def _round(clients: Sequence[_Client], tag: bytes) -> int:
    """Ask each client for an echo, then count the answers within one deadline."""
    payloads = [b"%s-%d" % (tag, i) for i in range(len(clients))]
    asked = [client.ask(payload) for client, payload in zip(clients, payloads, strict=True)]
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    return sum(ok and client.answered(payload, deadline)
               for client, payload, ok in zip(clients, payloads, asked, strict=True))


def _recovery(address: tuple[str, int], left_at: float) -> float | None:
    """Seconds from ``left_at`` to a new client's first answer; None past the timeout."""
    deadline = left_at + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            client = _Client(address)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            if client.ask(b"back") and client.answered(b"back", deadline):
                return time.monotonic() - left_at
        finally:
            client.close()
    return None


@contextlib.contextmanager
def _server(model: str, args: Sequence[str], root: Path) -> Iterator[LaunchedServer]:
    with tempfile.TemporaryDirectory(prefix="concbench-resources-") as folder:
        logs = Path(folder)
        server = LaunchedServer(server_argv(model, args), logs / "out", logs / "err",
                                cwd=root, env=child_env(root))
        try:
            server.wait_ready(READY_TIMEOUT_S)
            yield server
        finally:
            server.stop()


def probe(model: str, args: Sequence[str] = (), *, name: str | None = None,
          root: Path = REPO_ROOT) -> Outcome:
    """Run the probe on one model (``root``: the tree whose servers run)."""
    with _server(model, args, root) as server:
        address = server.address
        limit_descriptors(server.pid)
        clients: list[_Client] = []
        try:
            for _ in range(CONNECTIONS):
                clients.append(_Client(address))
            payloads = [b"first-%d" % i for i in range(len(clients))]
            for client, payload in zip(clients, payloads, strict=True):
                client.ask(payload)
            held = _first_answered(clients, payloads, HELD)
            members = procs.tree(server.pid)
            limit_reached = _most_fds(members) >= FD_LIMIT - 2
            before, started = _cpu_seconds(members), time.monotonic()
            time.sleep(CPU_WINDOW_S)
            members = procs.tree(server.pid)
            cpu = (_cpu_seconds(members) - before) / (time.monotonic() - started)
            limit_reached = limit_reached or _most_fds(members) >= FD_LIMIT - 2
            held_again = _round(held, b"again")
        finally:
            for client in clients:
                client.close()
        recovery = _recovery(address, time.monotonic())
        alive = server.alive()
        stderr_bytes = len(server.stderr_text().encode())
    return Outcome(name or model, list(args), alive, limit_reached, len(members), len(held),
                   held_again, round(100 * max(cpu, 0.0), 1),
                   None if recovery is None else round(recovery, 3), stderr_bytes)


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated models (default: every one here)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the checkout whose servers run (default: this one), e.g. an "
                             "exported older revision, for a before-and-after table")
    parser.add_argument("--json", type=Path,
                        help=f"write the record here (e.g. RUN_DIR/{RECORD_FILE})")


def record(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The versioned JSON record the report reads."""
    return {"schema": SCHEMA, "created": utc_now(), "python": sys.version.split()[0],
            "fd_limit": FD_LIMIT, "connections": CONNECTIONS, "held": HELD,
            "cpu_window_s": CPU_WINDOW_S, "max_cpu_percent": MAX_CPU_PERCENT,
            "max_recovery_s": MAX_RECOVERY_S, "recovery_timeout_s": RECOVERY_TIMEOUT_S,
            "models": [asdict(outcome) | {"failures": outcome.failures()}
                       for outcome in outcomes]}


def describe(outcome: Outcome) -> str:
    """One line: the figures, then how it breaks the rule, if it does."""
    recovery = "–" if outcome.recovery_s is None else f"{outcome.recovery_s:.2f} s"
    limit = "" if outcome.limit_reached else "  (never out of descriptors)"
    line = (f"{outcome.model:22} held {outcome.held_again}/{HELD}  "
            f"CPU {outcome.cpu_percent:5.1f} %  recovery {recovery:>7}  "
            f"stderr {outcome.stderr_bytes:,} B")
    failures = outcome.failures()
    return line + limit + (f"  FAILS: {'; '.join(failures)}" if failures else "  ok")


def run(options: argparse.Namespace) -> int:
    import servers

    names = options.models.split(",") if options.models else servers.available_models()
    outcomes = []
    for number, name in enumerate(names, 1):
        print(f"[{number}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        try:
            outcome = probe(name, root=options.root)
        except (LaunchFailed, KeyError) as error:
            print(f"resources: {name}: {error}", file=sys.stderr)
            return 2
        outcomes.append(outcome)
        print(describe(outcome), flush=True)
    if options.json is not None:
        atomic_write_json(options.json, record(outcomes))
        print(f"record: {options.json}", file=sys.stderr)
    return 1 if any(outcome.failures() for outcome in outcomes) else 0
