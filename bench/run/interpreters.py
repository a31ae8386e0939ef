"""Interpreters as a benchmark axis: find one from a spec, probe it, describe it.

A spec is a command name looked up on ``PATH`` (``python3.11``, ``python3.13t``), a path to an
executable (``/opt/py/bin/python3``, ``./python``), ``current`` (the interpreter running the
bench) or ``freethreaded`` (the build ``make freethreaded`` leaves in ``.cache/python3.13t``;
``python3.13t`` falls back to it when not on ``PATH``).

Every candidate is run once with a tiny ``-c`` probe, bounded by a timeout, so what is recorded
(version, implementation, whether the GIL is enabled) is what the interpreter says, not what its
name suggests. A spec that cannot be used gives ``None`` from :func:`resolve` and a one-line
reason from :func:`why_missing`, for the runner to skip it with a note.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import REPO_ROOT

FREETHREADED = REPO_ROOT / ".cache" / "python3.13t" / "bin" / "python3.13t"
MIN_VERSION = (3, 11)  # what the servers need (pyproject.toml requires-python)
PROBE_TIMEOUT = 10.0  # seconds an interpreter may take to answer the probe
SWITCH_INTERVAL_S = 0.005  # CPython's default sys.getswitchinterval(), for a probe that lacks it

# Runs on any CPython or PyPy, old or new (even 2.7, so that it can say it is too old).
PROBE = (
    "import json, platform, sys, sysconfig\n"
    "gil = getattr(sys, '_is_gil_enabled', None)\n"
    "print(json.dumps({'version': platform.python_version(),\n"
    " 'version_info': list(sys.version_info[:3]),\n"
    " 'implementation': platform.python_implementation(),\n"
    " 'executable': sys.executable,\n"
    " 'gil_enabled': gil() if gil else True,\n"
    " 'switch_interval_s': sys.getswitchinterval(),\n"
    " 'free_threaded_build': bool(sysconfig.get_config_var('Py_GIL_DISABLED'))}))\n"
)


@dataclass(frozen=True)
class Interpreter:
    """One interpreter, as it described itself to the probe."""

    spec: str  # what was asked for
    path: Path  # what runs (as found: may be a symlink or a shim)
    executable: str  # sys.executable as the interpreter reports it
    version: str  # e.g. "3.13.5"
    implementation: str  # e.g. "CPython"
    gil_enabled: bool  # at start-up, in this environment (PYTHON_GIL can change it)
    free_threaded_build: bool  # built with --disable-gil
    switch_interval_s: float = SWITCH_INTERVAL_S  # how long a thread may keep the GIL

    @property
    def label(self) -> str:
        """Short name for reports, e.g. ``CPython 3.13.5 (free-threaded, GIL off)``."""
        if self.free_threaded_build:
            gil = "GIL on" if self.gil_enabled else "GIL off"
            return f"{self.implementation} {self.version} (free-threaded, {gil})"
        return f"{self.implementation} {self.version}"

    def describe(self) -> dict[str, str | bool]:
        """The metadata a result records about its interpreter (JSON-ready)."""
        return {
            "interpreter": self.spec,
            "path": str(self.path),
            "executable": self.executable,
            "version": self.version,
            "implementation": self.implementation,
            "gil_enabled": self.gil_enabled,
            "free_threaded_build": self.free_threaded_build,
            "switch_interval_s": self.switch_interval_s,
            "label": self.label,
        }

    def command(self, *args: str) -> list[str]:
        """argv running this interpreter with ``args``, e.g. ``command("-m", "servers", m)``."""
        return [str(self.path), *args]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment in which this interpreter imports the repo's packages (bench,
        servers, clients) from the source tree: the repo goes first on ``PYTHONPATH``."""
        env = dict(os.environ if base is None else base)
        paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env


def resolve(spec: str, timeout: float = PROBE_TIMEOUT) -> Interpreter | None:
    """The interpreter ``spec`` names, or None if it cannot be used (see :func:`why_missing`)."""
    found = lookup(spec, timeout)
    return found if isinstance(found, Interpreter) else None


def why_missing(spec: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why ``spec`` cannot be used, in one line; None if it can."""
    found = lookup(spec, timeout)
    return found if isinstance(found, str) else None


def lookup(spec: str, timeout: float = PROBE_TIMEOUT,
           env: dict[str, str] | None = None) -> Interpreter | str:
    """The interpreter ``spec`` names, or the reason it cannot be used (one probe run, with
    ``env`` added to the environment: PYTHON_GIL=1 re-enables a free-threaded build's GIL)."""
    path = locate(spec)
    if isinstance(path, str):
        return path
    facts = probe(path, timeout, env)
    if isinstance(facts, str):
        return facts
    try:
        version_info = tuple(int(part) for part in facts["version_info"][:2])
        interpreter = Interpreter(
            spec=spec, path=path, executable=str(facts["executable"]),
            version=str(facts["version"]), implementation=str(facts["implementation"]),
            gil_enabled=bool(facts["gil_enabled"]),
            free_threaded_build=bool(facts["free_threaded_build"]),
            switch_interval_s=float(facts.get("switch_interval_s", SWITCH_INTERVAL_S)))
    except (KeyError, TypeError, ValueError) as error:
        return f"{path}: the probe's answer lacks {error}: {str(facts)[:200]}"
    if version_info < MIN_VERSION:
        minimum = ".".join(map(str, MIN_VERSION))
        return f"{path} is Python {interpreter.version}; the servers need {minimum} or newer"
    return interpreter


def locate(spec: str) -> Path | str:
    """The executable file ``spec`` names, or why there is none (without running it)."""
    if spec == "current":
        return Path(sys.executable)
    if spec == "freethreaded":
        if FREETHREADED.exists():
            return _executable(FREETHREADED)
        return f"the free-threaded build is not at {_short(FREETHREADED)}: run `make freethreaded`"
    if os.sep in spec or spec.startswith(("~", ".")):
        return _executable(Path(spec).expanduser())
    found = shutil.which(spec)
    if found:
        return Path(found)
    if spec == FREETHREADED.name and FREETHREADED.exists():
        return _executable(FREETHREADED)
    hint = " (or run `make freethreaded`)" if spec == FREETHREADED.name else ""
    return f"{spec} is not on PATH{hint}"


def probe(path: Path, timeout: float = PROBE_TIMEOUT,
          env: dict[str, str] | None = None) -> dict[str, object] | str:
    """Run the probe under ``path``: its answer as a dict, or why it gave none.

    The probe runs in its own session so that a timeout kills everything it started (a shim's
    children included) and the call never outlives ``timeout`` by much.
    """
    argv = [str(path), "-c", PROBE]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env={**os.environ, **env} if env else None)
    except OSError as error:
        return f"{path} cannot be run: {error.strerror or error}"
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"{path} did not answer the probe within {timeout:g} s"
    if proc.returncode != 0:
        first = _first_line(err) or _first_line(out) or "no output"
        return f"{path} failed (exit {proc.returncode}): {first}"
    try:
        facts = json.loads(out)
    except ValueError:
        return f"{path} is not a Python interpreter? probe printed: {_first_line(out)!r}"
    if not isinstance(facts, dict):
        return f"{path} is not a Python interpreter? probe printed: {_first_line(out)!r}"
    return facts


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the probe's whole process group and reap the probe."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)  # SIGKILL cannot be ignored: this is quick
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _executable(path: Path) -> Path | str:
    if not path.exists():
        return f"{path}: no such file"
    if path.is_dir() or not os.access(path, os.X_OK):
        return f"{path} is not an executable file"
    return path


def _first_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[0].strip()[:200] if lines else ""


def _short(path: Path) -> str:
    """``path`` relative to the repo when inside it."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
