"""What a run was measured on, recorded once per run: without it a number cannot be compared."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench import REPO_ROOT

PACKAGES = ("concbench", "psutil", "hdrhistogram", "pandas", "matplotlib", "rich", "scipy",
            "uvloop", "gevent", "greenlet")

@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and the swarm may use (None: no pinning)."""

    name: str
    server_cpus: tuple[int, ...] | None
    swarm_cpus: tuple[int, ...] | None
    note: str | None = None

    @contextlib.contextmanager
    def off_server_cpus(self) -> Iterator[None]:
        """Keep this process (a sampler, a progress bar) on the swarm's CPUs meanwhile."""
        before = os.sched_getaffinity(0)
        swarm, server = self.swarm_cpus, self.server_cpus
        pin = swarm is not None and server is not None and set(swarm) != set(server)
        if pin:
            os.sched_setaffinity(0, set(swarm))
        try:
            yield
        finally:
            if pin:
                os.sched_setaffinity(0, before)

    def swarm_workers(self) -> int:
        """Default swarm worker processes: one per swarm core (all but one when unpinned)."""
        if self.swarm_cpus is not None:
            return max(1, len(self.swarm_cpus))
        return max(1, len(usable_cpus()) - 1)

    def cpus_used(self) -> list[int]:
        """Every CPU the server or the swarm may run on (all usable ones when unpinned)."""
        if self.server_cpus is None or self.swarm_cpus is None:
            return usable_cpus()
        return sorted({*self.server_cpus, *self.swarm_cpus})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "server_cpus": cpu_list(self.server_cpus),
                "swarm_cpus": cpu_list(self.swarm_cpus), "note": self.note}


def cpu_list(cpus: tuple[int, ...] | None) -> list[int] | None:
    """A set of CPUs as a record holds it: a list, None for no pinning."""
    return None if cpus is None else list(cpus)


def cpu_text(cpus: tuple[int, ...] | None) -> str:
    """A set of CPUs for a person to read: "0,1", "any" for no pinning."""
    return "any" if cpus is None else ",".join(map(str, cpus))


def one_cpu_each() -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """A server on the first usable CPU and one client on the second (the self-checks pin a
    single-worker client, unlike ``resolve_placement``'s swarm on every other CPU); no pinning
    on one CPU."""
    usable = usable_cpus()
    return ((usable[0],), (usable[1],)) if len(usable) >= 2 else (None, None)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (not os.cpu_count(): we may be confined)."""
    return sorted(os.sched_getaffinity(0))


def resolve_placement(name: str, server_cores: int = 1,
                      cpus: list[int] | None = None) -> Placement:
    """``split``: server on the first ``server_cores`` CPUs, swarm on the rest; ``same``: both
    on the server's CPUs; ``none``: no pinning. Split falls back to same on one CPU."""
    cpus = usable_cpus() if cpus is None else cpus
    if name == "none":
        return Placement("none", None, None)
    if name == "split" and len(cpus) < 2:
        return Placement("same", tuple(cpus), tuple(cpus),
                         note="only one CPU: split placement fell back to same")
    count = min(server_cores, len(cpus) - 1) if name == "split" else min(server_cores, len(cpus))
    note = None
    if count < server_cores:
        note = f"asked for {server_cores} server cores, gave {count} of {len(cpus)}"
    server = tuple(cpus[:count])
    swarm = tuple(cpus[count:]) if name == "split" else server
    return Placement(name, server, swarm, note)


def this_interpreter() -> dict[str, Any]:
    """The running interpreter, described as probe_interpreter does."""
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "path": sys.executable, "executable": sys.executable,
        "implementation": platform.python_implementation(),
        "version": platform.python_version(), "build": list(platform.python_build()),
        "compiler": platform.python_compiler(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil() if gil else True,
        "switch_interval_s": sys.getswitchinterval(),  # how long a thread may keep the GIL
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The suite's revision and whether the working tree differs from it."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref",
                                                                 "HEAD"),
            "dirty": None if status is None else bool(status)}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def collect(placement: Placement, interpreters: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """The run's environment; ``load_average_after`` is filled in when the run ends."""
    uname = platform.uname()
    memory = psutil.virtual_memory()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "python": this_interpreter(),
        "interpreters": interpreters or [this_interpreter()],
        "hostname": socket.gethostname(),
        "os": uname.system, "kernel": uname.release, "kernel_version": uname.version,
        "machine": uname.machine,
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable_cpus(),
        "cpu_governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory_bytes": memory.total,
        "fd_limit": {"soft": soft, "hard": hard},
        "somaxconn": _read("/proc/sys/net/core/somaxconn"),
        "placement": placement.to_dict(),
        "load_average_before": load_average(), "load_average_after": None,
        "packages": package_versions(), "git": git_info(),
    }
