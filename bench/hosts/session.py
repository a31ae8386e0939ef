"""The coordinator's side of the hosts: gateways, code, clocks, and the server there.

``HostsSession`` opens one execnet gateway per host of the hosts file (``bench/hosts/
config.py``), runs ``bench/hosts/agent.py`` there, makes sure the host runs this very code
(its own install when the fingerprints match, else a copy shipped with ``execnet.RSync`` into
a temporary folder there) and has the role's dependencies, and measures each host's
CLOCK_MONOTONIC offset over its channel (the round trip with the least delay wins, as NTP
does). ``RemoteServer`` is ``bench.launch.LaunchedServer`` for a model on the server host,
with ``RemoteSampler`` for its psutil samples; ``bench/hosts/swarm.py`` drives the load hosts.

Gateways start with SIGINT ignored, so a Ctrl-C at the terminal reaches the runner alone: it
stops the trial in order (the hosts' processes would otherwise die mid-trial, and the finished
trial with them). Closing the session ends every agent (servers stopped, workers reaped,
shipped code removed) and then the gateways; a gateway that does not exit in time is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import execnet
import psutil

from bench import REPO_ROOT, procs
from bench.hosts import agent
from bench.hosts.config import HostsFile, HostSpec
from bench.launch import LaunchFailed, LaunchInterrupted

if TYPE_CHECKING:
    from bench.store import TrialSpec

OPEN_TIMEOUT_S = 30.0  # a gateway up and its agent's hello (ssh, a cold interpreter)
REPLY_TIMEOUT_S = 15.0  # one request's reply (a server's launch, a sample list)
LOAD_HELLO_TIMEOUT_S = 60.0  # a load host's first workers spawned and idle
CLOCK_ROUNDS = 16
READY_SLICE_S = 0.2  # the READY wait goes in slices so that Ctrl-C is heard
TERMINATE_TIMEOUT_S = 5.0
PIP_NAMES = {"hdrh": "hdrhistogram"}  # a module's package on PyPI, where the names differ


class HostError(Exception):
    """A host cannot be used, or went away; the message names it."""


def _name(spec: HostSpec) -> str:
    return f"{spec.role} host {spec.name} ({spec.gateway})"


def request(channel: Any, message: dict[str, Any] | None, expect: Sequence[str],
            timeout_s: float, who: str) -> dict[str, Any]:
    """Send ``message`` (if any) and return the next reply, which must be one of ``expect``;
    HostError when the host fails, goes away or is silent for ``timeout_s``."""
    try:
        if message is not None:
            channel.send(message)
        reply = channel.receive(timeout_s)
    except channel.TimeoutError:
        raise HostError(f"{who} did not answer within {timeout_s:g} s") from None
    except (EOFError, OSError) as error:
        raise HostError(f"{who} went away: {error or 'its gateway closed'}") from None
    except execnet.RemoteError as error:
        raise HostError(f"{who} failed: {_last_line(error.formatted)}") from None
    if not isinstance(reply, dict) or reply.get("op") not in expect:
        why = reply.get("error") if isinstance(reply, dict) else reply
        raise HostError(f"{who}: {why}")
    return reply


def start_agent(gateway: Any, who: str) -> Any:
    """A channel to a new agent on the gateway (HostError if the gateway is gone: a
    popen gateway whose command failed is found out here, at its first message)."""
    try:
        return gateway.remote_exec(agent)
    except (OSError, EOFError, ValueError) as error:
        raise HostError(f"{who}: cannot start its gateway: {error} (the gateway process "
                        "ended: its command failed, or the host went away)") from None


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


class _ProjectSync(execnet.RSync):
    """RSync of the project's packages only (agent.is_shipped: no caches, no build output)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, verbose=False)
        self.root = str(root)

    def filter(self, path: str) -> bool:
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        return agent.is_shipped(relative, os.path.isdir(path))


class Host:
    """One host: its gateway, its control channel, where its code is, its clock."""

    def __init__(self, spec: HostSpec, group: execnet.Group) -> None:
        self.spec, self.group = spec, group
        self.who = _name(spec)
        self.gateway: Any = None
        self.control: Any = None
        self.hello: dict[str, Any] = {}
        self.root: str | None = None
        self.code: str | None = None  # "installed" or "shipped"
        self.offset_ns = 0  # the host's CLOCK_MONOTONIC minus ours
        self.rtt_ns: int | None = None

    def open(self, local_fingerprint: str) -> None:
        """Gateway, agent, code and dependencies, or HostError saying which is missing."""
        self.gateway = _make_gateway(self.group, self.spec.gateway, self.who)
        self.control = start_agent(self.gateway, self.who)
        self.hello = request(self.control, {"role": "control"}, ("hello",), OPEN_TIMEOUT_S,
                             self.who)
        same = self.hello.get("fingerprint") == local_fingerprint
        if self.spec.code == "installed" and not same:
            raise HostError(f"{self.who}: code = 'installed', but its python "
                            f"({self.hello.get('python')}) imports "
                            + ("other code than this checkout's" if self.hello.get(
                                "installed_root") else "no concbench packages"))
        if same and self.spec.code != "ship":
            self.root, self.code = self.hello["installed_root"], "installed"
        else:
            self.root, self.code = self._ship(), "shipped"
        reply = request(self.control, {"op": "check", "root": self.root,
                                       "modules": list(agent.ROLE_MODULES[self.spec.role])},
                        ("check",), OPEN_TIMEOUT_S, self.who)
        if reply["missing"]:
            wanted = sorted({PIP_NAMES.get(name.split(".")[0], name.split(".")[0])
                             for name in reply["missing"] if " " not in name})
            raise HostError(f"{self.who}: missing module(s) {', '.join(reply['missing'])} "
                            f"for its python {self.hello.get('python')}"
                            + (f" (install there: pip install {' '.join(wanted)})"
                               if wanted else ""))
        if reply["fingerprint"] != local_fingerprint:
            raise HostError(f"{self.who}: the code there differs from this checkout's after "
                            "shipping it")
        self.measure_clock()

    def _ship(self) -> str:
        """Copy the packages into a temporary folder there (removed when the session ends)."""
        folder = request(self.control, {"op": "ship_dir"}, ("ship_dir",), REPLY_TIMEOUT_S,
                         self.who)["path"]
        sync = _ProjectSync(REPO_ROOT)
        sync.add_target(self.gateway, folder)
        try:
            sync.send()
        except (OSError, EOFError) as error:
            raise HostError(f"{self.who}: shipping the code failed: {error}") from None
        return str(folder)

    def measure_clock(self) -> tuple[int, int]:
        """The host's clock minus ours, from the round trip with the least delay."""
        best: tuple[int, int] | None = None
        for _ in range(CLOCK_ROUNDS):
            sent = time.monotonic_ns()
            remote = request(self.control, {"op": "clock"}, ("clock",), REPLY_TIMEOUT_S,
                             self.who)["t_ns"]
            back = time.monotonic_ns()
            rtt = back - sent
            if best is None or rtt < best[1]:
                best = (remote - (sent + back) // 2, rtt)
        assert best is not None
        self.offset_ns, self.rtt_ns = best
        return best

    def cpus(self) -> list[int]:
        """The CPUs its role's processes run on: the file's, else all its python may use."""
        return list(self.spec.cpus or self.hello.get("cpus") or [])

    def alive(self) -> bool:
        """Whether the gateway still hears the host (its receiver ends when the host goes)."""
        return (self.control is not None and not self.control.isclosed()
                and self.gateway is not None and self.gateway.hasreceiver())

    def describe(self) -> dict[str, Any]:
        """What a trial record says of this host."""
        return {**self.spec.describe(), "python": self.hello.get("python"),
                "python_version": self.hello.get("version"),
                "hostname": self.hello.get("hostname"), "host_cpus": self.hello.get("cpus"),
                "code": self.code, "clock_offset_us": round(self.offset_ns / 1000, 1),
                "clock_rtt_us": round(self.rtt_ns / 1000, 1) if self.rtt_ns else None}

    def close(self) -> None:
        """End the agent (it removes shipped code), then the gateway (killed if it lingers)."""
        if self.control is not None:
            with contextlib.suppress(OSError, EOFError, ValueError):
                self.control.send({"op": "quit"})
                self.control.waitclose(REPLY_TIMEOUT_S)
            self.control = None
        if self.gateway is not None:
            _end_gateway(self.gateway)
            self.gateway = None


def _make_gateway(group: execnet.Group, spec: str, who: str) -> Any:
    """A gateway within OPEN_TIMEOUT_S (an ssh asking for a password would wait forever: its
    process is killed instead)."""
    before = {child.pid for child in psutil.Process().children()}
    made: dict[str, Any] = {}

    def make() -> None:
        try:
            made["gateway"] = group.makegateway(spec)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            made["error"] = error

    thread = threading.Thread(target=make, daemon=True)
    with _sigint_ignored():  # the gateway's process inherits it
        thread.start()
        thread.join(OPEN_TIMEOUT_S)
    if thread.is_alive():
        for child in psutil.Process().children():
            if child.pid not in before:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        raise HostError(f"{who}: its gateway did not come up within {OPEN_TIMEOUT_S:g} s")
    popen = getattr(getattr(made.get("gateway"), "_io", None), "popen", None)
    if popen is not None:
        procs.adopt(popen)  # the run's stray sweep must not take it for a leftover
    if "error" in made:
        error = made["error"]
        raise HostError(f"{who}: cannot start its gateway: {type(error).__name__}: "
                        f"{_last_line(str(error)) if str(error) else 'no detail'}")
    return made["gateway"]


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile (only the main thread may change a handler; elsewhere as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _end_gateway(gateway: Any) -> None:
    with contextlib.suppress(Exception):
        gateway.exit()
    io = getattr(gateway, "_io", None)
    popen = getattr(io, "popen", None)
    if popen is not None:  # a popen or ssh gateway: our child, reaped here
        try:
            popen.wait(TERMINATE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - it lingers: kill it
            with contextlib.suppress(Exception):
                popen.kill()
                popen.wait(TERMINATE_TIMEOUT_S)
        procs.forget(popen)


class HostsSession:
    """Every host of a hosts file, opened together and closed together."""

    def __init__(self, hosts_file: HostsFile) -> None:
        self.file = hosts_file
        self.group = execnet.Group()
        self.server = Host(hosts_file.server, self.group)
        self.load = [Host(spec, self.group) for spec in hosts_file.load]
        self.fingerprint = agent.fingerprint(str(REPO_ROOT)) or ""

    @property
    def hosts(self) -> list[Host]:
        return [self.server, *self.load]

    def open(self) -> None:
        """Open every host; on the first that fails, close all and raise its HostError."""
        try:
            for host in self.hosts:
                host.open(self.fingerprint)
        except BaseException:
            self.close()
            raise

    def reopen(self, host: Host) -> None:
        """A host whose gateway went away, opened again (HostError if it cannot be)."""
        host.close()
        host.open(self.fingerprint)

    def close(self) -> None:
        for host in reversed(self.hosts):
            host.close()
        with contextlib.suppress(Exception):
            self.group.terminate(TERMINATE_TIMEOUT_S)

    def __enter__(self) -> HostsSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"file": str(self.file.path), "address": self.file.address,
                "server": self.server.describe(), "load": [h.describe() for h in self.load],
                "notes": self.shared_cpus()}

    def shared_cpus(self) -> list[str]:
        """Hosts that are one machine (the same hostname) using the same CPUs: their processes
        compete for those CPUs, which a reader of the figures must know (namespaces on one
        machine, or two gateways to one host)."""
        notes = []
        hosts = self.hosts
        for i, first in enumerate(hosts):
            for second in hosts[i + 1:]:
                if first.hello.get("hostname") != second.hello.get("hostname"):
                    continue
                shared = sorted(set(first.cpus()) & set(second.cpus()))
                if shared:
                    notes.append(f"{first.spec.name} and {second.spec.name} are one machine "
                                 f"({first.hello.get('hostname')}) sharing CPU"
                                 f"{'s' if len(shared) > 1 else ''} "
                                 f"{', '.join(map(str, shared))}: their processes compete for "
                                 "them (in open loop one load worker spinning until its next "
                                 "send delays the other)")
        return notes

    def launch(self, spec: TrialSpec, context: Any, out_path: Path,
               err_path: Path) -> RemoteServer:
        """A trial's server on the server host, bound to the hosts file's address (the
        runner's ServerLauncher, bench/run/context.py)."""
        server = spec.server
        if server.interpreter != sys.executable:
            raise LaunchFailed(f"interpreter {server.interpreter}: a run across hosts uses "
                               "each host's own python")
        return self.launch_server([server.model, "--host", self.file.address, "--port", "0",
                                   *server.args], out_path, err_path,
                                  dict(server.interpreter_env))

    def launch_server(self, args: Sequence[str], out_path: Path, err_path: Path,
                      env: dict[str, str] | None = None) -> RemoteServer:
        """A model started on the server host (LaunchFailed if the host cannot be used)."""
        for attempt in (1, 2):  # a host that went away since the last trial: opened again
            try:
                if not self.server.alive():
                    self.reopen(self.server)
            except HostError as error:
                raise LaunchFailed(str(error)) from None
            try:
                return RemoteServer(self.server, args, out_path, err_path, env or {})
            except LaunchFailed:
                if attempt == 2 or self.server.alive():
                    raise
        raise AssertionError("unreachable")


class RemoteServer:
    """``bench.launch.LaunchedServer`` for a model on the server host (same methods)."""

    def __init__(self, host: Host, args: Sequence[str], out_path: Path, err_path: Path,
                 env: dict[str, str]) -> None:
        self.host, self.out_path, self.err_path = host, out_path, err_path
        self.argv = ["-m", "servers", *args]
        self.who = f"the server on {host.who}"
        self.stopped: procs.Stopped | None = None
        self._alive = True
        self.lost: str | None = None  # why the host is gone, if it went during the trial
        self._address: tuple[str, int] | None = None
        try:
            self.channel = start_agent(host.gateway, self.who)
            launched = request(self.channel, {
                "role": "server", "root": host.root, "args": list(args), "env": env,
                "cpus": list(host.spec.cpus) if host.spec.cpus else None},
                ("launched",), REPLY_TIMEOUT_S, self.who)
        except HostError as error:
            self._alive = False
            self.stopped = procs.Stopped(None, False, 0.0)
            err_path.write_text(f"{error}\n")
            raise LaunchFailed(str(error)) from None
        self.pid = int(launched["pid"])  # on the server host

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise LaunchFailed("the server has not printed READY")
        return self._address

    def wait_ready(self, timeout_s: float, stop: threading.Event | None = None
                   ) -> tuple[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchFailed(f"server on {self.host.spec.name} did not print READY "
                                   f"within {timeout_s:g} s")
            if stop is not None and stop.is_set():
                raise LaunchInterrupted
            try:
                reply = request(self.channel, {"op": "wait_ready",
                                               "timeout_s": min(READY_SLICE_S, remaining)},
                                ("ready", "pending", "failed"), REPLY_TIMEOUT_S, self.who)
            except HostError as error:
                self._alive = False
                raise LaunchFailed(str(error)) from None
            if reply["op"] == "ready":
                host, port = reply["address"]
                self._address = (str(host), int(port))
                return self._address
            if reply["op"] == "failed":
                raise LaunchFailed(f"{reply['error']} (on {self.host.spec.name})")

    def alive(self) -> bool:
        if not self._alive or self.stopped is not None:
            return False
        try:
            return bool(request(self.channel, {"op": "alive"}, ("alive",), REPLY_TIMEOUT_S,
                                self.who)["alive"])
        except HostError as error:
            self._alive, self.lost = False, str(error)
            return False

    def sampler(self, t0: float) -> RemoteSampler:
        """A sampler there, on trial time ``t0`` (our monotonic seconds)."""
        return RemoteSampler(self, t0 + self.host.offset_ns / 1e9)

    def stop(self, grace_s: float = 3.0, *, sig: int = signal.SIGTERM) -> procs.Stopped:
        """SIGTERM there, SIGKILL after ``grace_s``; its output copied into our log files."""
        if self.stopped is not None:
            return self.stopped
        started = time.monotonic()
        try:
            reply = request(self.channel, {"op": "stop", "grace_s": grace_s, "sig": int(sig)},
                            ("stopped",), grace_s + REPLY_TIMEOUT_S, self.who)
            self.stopped = procs.Stopped(reply["returncode"], bool(reply["killed"]),
                                         float(reply["seconds"]))
            self.out_path.write_text(reply["stdout"])
            self.err_path.write_text(reply["stderr"])
        except HostError as error:  # the host went: its agent's end killed the server
            self.lost = self.lost or str(error)
            self.stopped = procs.Stopped(None, True, time.monotonic() - started)
            with self.err_path.open("a") as err:
                err.write(f"\n{error}\n")
        finally:
            self._alive = False
            with contextlib.suppress(OSError, EOFError, ValueError):
                self.channel.send({"op": "quit"})
                self.channel.waitclose(REPLY_TIMEOUT_S)
        return self.stopped

    def stdout_extra(self) -> bytes:
        return b""

    def stderr_text(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def stderr_tail(self, chars: int = 1500) -> str:
        return self.stderr_text()[-chars:].strip()


class RemoteSampler:
    """``bench.sampling.TreeSampler`` running on the server host (same methods)."""

    def __init__(self, server: RemoteServer, t0_there: float) -> None:
        self.server, self.t0_there = server, t0_there
        self.samples: list[dict[str, Any]] = []
        self._started = self._stopped = False

    def _ask(self, message: dict[str, Any], expect: Sequence[str]) -> dict[str, Any] | None:
        try:
            return request(self.server.channel, message, expect, REPLY_TIMEOUT_S,
                           self.server.who)
        except HostError:
            return None

    def sample_now(self) -> None:
        """The first sample comes with ``start`` (one request instead of two)."""

    def start(self) -> None:
        self._started = self._ask({"op": "sample_start", "t0": self.t0_there},
                                  ("sampling",)) is not None

    def mark(self, *times: float) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            self.server.channel.send({"op": "mark", "times": list(times)})

    def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        reply = self._ask({"op": "sample_stop"}, ("samples",))
        if reply is not None:
            self.samples = list(reply["samples"])
