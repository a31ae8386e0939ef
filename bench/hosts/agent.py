"""What runs on a host, inside an execnet gateway: one role per channel.

``bench/hosts/session.py`` sends this module's source with ``gateway.remote_exec``; it runs
there as ``__channelexec__`` with a ``channel``. So it imports only the standard library at the
top: the project's packages are imported after the first message has put their folder (the
host's own install, or the copy shipped there with ``execnet.RSync``) first on ``sys.path``.

The first message on a channel names its role:

- ``control``: one per host and session. Says what the host has (python, CPUs, the
  fingerprint of the project it would import, the modules it lacks), answers clock requests,
  makes the folder shipped code goes to, and removes it when the session ends.
- ``server``: one per trial. Starts a model through the launch contract (``bench.launch``),
  reports READY, samples its process tree with psutil (``bench.sampling``), stops it.
  Whatever happens, the server is stopped and reaped before the channel's function returns.
- ``load``: one per host and session. Keeps swarm workers (``clients.service.WorkerPool``)
  and runs its share of each trial's workers between a start barrier ("ready", then "go" with
  the common timeline in this host's clock) and the per-worker results.

Every request is a dict with an ``op``; every reply a dict too (execnet carries only plain
types, so worker results travel as JSON text).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PACKAGES = ("protocol", "servers", "clients", "bench")  # what a host needs of the project
SHIPPED_SUFFIXES = (".py", ".c", ".toml", ".h")
ROLE_MODULES = {  # imported on a host before it takes a role: a missing dependency shows here
    "server": ("psutil", "bench.launch", "bench.sampling"),
    "load": ("hdrh.histogram", "numpy", "psutil", "clients.service"),
}
IDLE_POLL_S = 0.5
BARRIER_TIMEOUT_S = 60.0  # "ready" to "go": the coordinator waits for its slowest host


# ------------------------------------------------------------------------ the code, hashed


def is_shipped(relative: str, is_dir: bool = False) -> bool:
    """Whether a path (relative to the project root, '/'-separated) is part of the code a host
    needs: the four packages' folders and sources, without caches or build products."""
    parts = relative.split("/")
    if parts[0] not in PACKAGES or "__pycache__" in parts:
        return False
    return is_dir or relative.endswith(SHIPPED_SUFFIXES)


def fingerprint(root: str) -> str | None:
    """SHA-256 over the shipped files under ``root`` (names and contents); None when ``root``
    holds none of the packages."""
    digest = hashlib.sha256()
    found = False
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                if not is_shipped(relative) or not os.path.isfile(path):
                    continue
                found = True
                with open(path, "rb") as handle:
                    digest.update(relative.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest() if found else None


def installed_root() -> str | None:
    """The folder this host's python would import the project from, if any."""
    roots = set()
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        roots.add(str(Path(list(spec.submodule_search_locations)[0]).parent))
    return roots.pop() if len(roots) == 1 else None


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The modules of ``names`` that do not import here (the missing dependency's own name
    when an import fails inside one)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            missing.append(error.name or name)
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            missing.append(f"{name} ({type(error).__name__}: {error})")
    return sorted(set(missing))


# ------------------------------------------------------------------------ roles


class Replies:
    """Sends on the channel from several threads, one message at a time."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock, contextlib.suppress(OSError, EOFError):
            self.channel.send(message)


def requests(channel: Any, idle_limit_s: float):
    """The channel's requests until it closes or ``quit``; ends after ``idle_limit_s``
    without one (the coordinator is gone)."""
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_limit_s:
        try:
            message = channel.receive(IDLE_POLL_S)
        except channel.TimeoutError:
            continue
        except (EOFError, OSError):
            return
        if message.get("op") == "quit":
            return
        idle_since = time.monotonic()
        yield message


def control(channel: Any, request: dict[str, Any]) -> None:
    """What the host has, clock readings, and a folder for shipped code (removed at the end)."""
    replies = Replies(channel)
    root = installed_root()
    cpus = sorted(os.sched_getaffinity(0))
    replies.send({"op": "hello", "python": sys.executable, "version": sys.version.split()[0],
                  "pid": os.getpid(), "hostname": os.uname().nodename, "cpus": cpus,
                  "installed_root": root, "fingerprint": fingerprint(root) if root else None})
    ship_dir = None
    try:
        for message in requests(channel, float(request.get("idle_limit_s", 3600))):
            if message["op"] == "clock":
                replies.send({"op": "clock", "t_ns": time.monotonic_ns()})
            elif message["op"] == "ship_dir":
                ship_dir = ship_dir or tempfile.mkdtemp(prefix="concbench-code-")
                replies.send({"op": "ship_dir", "path": ship_dir})
            elif message["op"] == "check":  # the role's modules, from where its code is
                use_root(message["root"])
                replies.send({"op": "check", "fingerprint": fingerprint(message["root"]),
                              "missing": missing_modules(tuple(message["modules"]))})
    finally:
        if ship_dir is not None:
            shutil.rmtree(ship_dir, ignore_errors=True)


def server(channel: Any, request: dict[str, Any]) -> None:
    """One model through the launch contract, driven request by request; stopped and reaped
    before this returns, whatever happens."""
    from bench.launch import LaunchedServer, LaunchFailed, child_env
    from bench.sampling import TreeSampler

    replies = Replies(channel)
    root = Path(request["root"])
    work = Path(tempfile.mkdtemp(prefix="concbench-server-"))
    launched = sampler = None
    try:
        launched = LaunchedServer(
            [sys.executable, "-m", "servers", *request["args"]], work / "server.out",
            work / "server.err", cpus=tuple(request["cpus"]) if request.get("cpus") else None,
            cwd=root, env=child_env(root, request.get("env") or {}))
        replies.send({"op": "launched", "pid": launched.pid})
        for message in requests(channel, float(request.get("idle_limit_s", 600))):
            op = message["op"]
            if op == "wait_ready":
                try:
                    host, port = launched.wait_ready(float(message["timeout_s"]))
                    replies.send({"op": "ready", "address": [host, port]})
                except LaunchFailed as error:
                    pending = "did not print READY within" in str(error)
                    replies.send({"op": "pending" if pending else "failed",
                                  "error": str(error)})
            elif op == "clock":
                replies.send({"op": "clock", "t_ns": time.monotonic_ns()})
            elif op == "sample_start":
                sampler = TreeSampler(launched.pid, float(message["t0"]))
                sampler.sample_now()
                sampler.start()
                replies.send({"op": "sampling"})
            elif op == "mark" and sampler is not None:
                sampler.mark(*message["times"])
            elif op == "sample_stop":
                if sampler is not None:
                    sampler.stop()
                replies.send({"op": "samples", "samples": sampler.samples if sampler else []})
            elif op == "alive":
                replies.send({"op": "alive", "alive": launched.alive()})
            elif op == "stop":
                stopped = launched.stop(float(message["grace_s"]),
                                        sig=int(message.get("sig", signal.SIGTERM)))
                replies.send({"op": "stopped", "returncode": stopped.returncode,
                              "killed": stopped.killed, "seconds": stopped.seconds,
                              "stdout": launched.out_path.read_bytes().decode(errors="replace"),
                              "stderr": launched.stderr_text()})
    except Exception as error:  # the coordinator hears why; the server still stops below
        replies.send({"op": "failed", "error": f"{type(error).__name__}: {error}"})
    finally:
        if sampler is not None:
            sampler.stop()
        if launched is not None:
            launched.stop(1.0)
        shutil.rmtree(work, ignore_errors=True)


def load(channel: Any, request: dict[str, Any]) -> None:
    """Swarm workers kept for the session, running this host's share of each trial."""
    from clients.service import WorkerPool
    from protocol.launch import raise_fd_limit

    replies = Replies(channel)
    if request.get("cpus"):
        os.sched_setaffinity(0, set(request["cpus"]))  # the workers inherit it
    raise_fd_limit()
    pool = WorkerPool()
    current: HostRun | None = None
    try:
        pool.ensure(max(1, int(request.get("workers") or 1)))
        replies.send({"op": "hello", "workers": len(pool.processes), "pid": os.getpid()})
        for message in requests(channel, float(request.get("idle_limit_s", 3600))):
            op = message["op"]
            if op == "clock":
                replies.send({"op": "clock", "t_ns": time.monotonic_ns()})
            elif op == "prepare":
                if current is not None:
                    current.abort()
                    current.join(5.0)
                current = HostRun(message, pool, replies)
                current.start()
            elif op == "go" and current is not None:
                current.gate.put(message["timeline_ns"])
            elif op == "abort" and current is not None:
                current.abort()
    except Exception as error:  # noqa: BLE001 - the coordinator hears why
        replies.send({"op": "failed", "error": f"{type(error).__name__}: {error}"})
    finally:
        if current is not None:
            current.abort()
            current.join(5.0)
        pool.close()


class HostRun(threading.Thread):
    """This host's workers of one trial, in a thread so that "go" and "abort" still arrive."""

    def __init__(self, message: dict[str, Any], pool: Any, replies: Replies) -> None:
        super().__init__(name=f"host-run-{message['trial']}", daemon=True)
        self.message, self.pool, self.replies = message, pool, replies
        self.trial = message["trial"]
        self.gate: queue.Queue[list[int] | None] = queue.Queue()
        self.run_: Any = None
        self.aborted = False

    def abort(self) -> None:
        """Stop this trial: before "go" it never starts (its workers stay idle in the pool);
        after, its workers are told to stop (SIGINT: they report what they measured)."""
        self.aborted = True
        self.gate.put(None)
        if self.run_ is not None:
            self.run_.interrupted = True
            self.run_._signal_workers(signal.SIGINT)

    def run(self) -> None:
        from clients.config import SwarmConfig, SwarmError
        from clients.plan import Timeline
        from clients.service import _PooledRun

        class Run(_PooledRun):  # the barrier is passed: the timeline is the coordinator's
            def make_timeline(self) -> Timeline:
                return timeline

        trial, replies = self.trial, self.replies
        indices = list(self.message["indices"])
        try:
            run = Run(SwarmConfig(**self.message["config"]), self.pool,
                      lambda note: replies.send({**note, "trial": trial}))
            run.plans = [run.plans[i] for i in indices]
            self.pool.ensure(len(run.plans))  # "ready" means its workers are up and idle
            replies.send({"op": "ready", "trial": trial})
            try:
                values = self.gate.get(timeout=BARRIER_TIMEOUT_S)
            except queue.Empty:
                values = None
            if values is None or self.aborted:
                replies.send({"op": "done", "trial": trial, "error": None, "interrupted": True})
                return
            timeline = Timeline(*values)
            self.run_ = run
            run.execute()
        except SwarmError as error:
            replies.send({"op": "done", "trial": trial, "error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 - the coordinator hears why
            replies.send({"op": "done", "trial": trial,
                          "error": f"{type(error).__name__}: {error}"})
            return
        for position, index in enumerate(indices):
            if position in run.results:
                replies.send({"op": "result", "trial": trial, "index": index,
                              "result": json.dumps(run.results[position])})
            else:
                replies.send({"op": "failure", "trial": trial, "index": index,
                              "why": run.failures.get(position, "did not report")})
        replies.send({"op": "done", "trial": trial, "error": None,
                      "interrupted": run.interrupted})


ROLES = {"control": control, "server": server, "load": load}


def use_root(root: str | None) -> None:
    """Import the project from ``root`` first (once: every trial's server channel names it)."""
    if root and root not in sys.path:
        sys.path.insert(0, root)
        importlib.invalidate_caches()


def main(channel: Any) -> None:
    """Take the first message's role and serve it, the project imported from its root (the
    control channel's ``check`` has found the role's modules there before any role starts)."""
    request = channel.receive()
    use_root(request.get("root"))
    ROLES[request["role"]](channel, request)


if __name__ == "__channelexec__":
    main(channel)  # type: ignore[name-defined]  # noqa: F821 - execnet provides it
