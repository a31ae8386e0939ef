"""bench.run.interpreters: finding, probing and describing interpreters, and skipping missing ones.

Fake interpreters are small shell scripts, so every failure path runs without any other Python.
Tests that need the free-threaded build skip when ``make freethreaded`` has not been run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import Client

from bench import REPO_ROOT as REPO
from bench.run import interpreters
from bench.run.interpreters import FREETHREADED, Interpreter, resolve, why_missing
from protocol import Op, Status, work

READY_TIMEOUT = 15.0  # seconds a server may take to print READY
needs_freethreaded = pytest.mark.skipif(
    not FREETHREADED.exists(),
    reason=f"no free-threaded build at {FREETHREADED}: run `make freethreaded`")


def fake_interpreter(tmp_path: Path, body: str, name: str = "fakepython") -> Path:
    """An executable shell script standing in for an interpreter."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def probe_answer(**overrides: object) -> str:
    """A shell line printing what the probe prints, with ``overrides``."""
    facts = {"version": "3.13.5", "version_info": [3, 13, 5], "implementation": "CPython",
             "executable": "/opt/fake/python3.13t", "gil_enabled": True,
             "free_threaded_build": False, **overrides}
    return f"echo '{json.dumps(facts)}'"


def test_current_interpreter_describes_itself() -> None:
    found = resolve("current")
    assert found is not None, why_missing("current")
    assert found.version == platform.python_version()
    assert found.implementation == platform.python_implementation()
    assert found.gil_enabled is getattr(sys, "_is_gil_enabled", lambda: True)()
    assert Path(found.executable).resolve() == Path(sys.executable).resolve()
    assert why_missing("current") is None


def test_name_is_looked_up_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    folder = Path(sys.executable).parent
    if not (folder / name).exists():
        pytest.skip(f"no {name} beside {sys.executable}")
    monkeypatch.setenv("PATH", str(folder))
    found = resolve(name)
    assert found is not None
    assert found.path == folder / name
    assert found.version == platform.python_version()


def test_describe_is_json_metadata(tmp_path: Path) -> None:
    path = fake_interpreter(tmp_path, probe_answer(gil_enabled=False, free_threaded_build=True))
    found = resolve(str(path))
    assert found is not None
    described = json.loads(json.dumps(found.describe()))
    assert described == {
        "interpreter": str(path), "path": str(path), "executable": "/opt/fake/python3.13t",
        "version": "3.13.5", "implementation": "CPython", "gil_enabled": False,
        "free_threaded_build": True, "label": "CPython 3.13.5 (free-threaded, GIL off)",
        "switch_interval_s": 0.005}  # a probe answer without it: CPython's default


def test_labels_tell_gil_builds_apart(tmp_path: Path) -> None:
    facts = {"spec": "x", "path": tmp_path, "executable": "x", "version": "3.13.5",
             "implementation": "CPython"}
    gil = Interpreter(**facts, gil_enabled=True, free_threaded_build=False)
    forced_on = Interpreter(**facts, gil_enabled=True, free_threaded_build=True)
    assert gil.label == "CPython 3.13.5"
    assert forced_on.label == "CPython 3.13.5 (free-threaded, GIL on)"


@pytest.mark.parametrize(("spec", "reason"), [
    ("no-such-python-xyz", "no-such-python-xyz is not on PATH"),
    ("/nonexistent/bin/python3", "/nonexistent/bin/python3: no such file"),
    ("~/../nonexistent-python", "no such file"),
])
def test_missing_interpreters_say_why(spec: str, reason: str) -> None:
    assert resolve(spec) is None
    message = why_missing(spec)
    assert message is not None and reason in message


def test_not_executable(tmp_path: Path) -> None:
    path = tmp_path / "python"
    path.write_text("not a program")
    assert resolve(str(path)) is None
    assert why_missing(str(path)) == f"{path} is not an executable file"
    assert why_missing(str(tmp_path)) == f"{tmp_path} is not an executable file"


def test_failing_program_reports_exit_and_message(tmp_path: Path) -> None:
    # what a pyenv shim for a version that is not selected does
    path = fake_interpreter(tmp_path, "echo 'pyenv: python3.12: command not found' >&2; exit 127")
    assert resolve(str(path)) is None
    assert why_missing(str(path)) == (
        f"{path} failed (exit 127): pyenv: python3.12: command not found")


def test_non_python_output(tmp_path: Path) -> None:
    path = fake_interpreter(tmp_path, "echo hello")
    message = why_missing(str(path))
    assert message is not None and "not a Python interpreter" in message and "hello" in message
    assert why_missing(str(fake_interpreter(tmp_path, "echo '[1, 2]'", "list")))


def test_incomplete_probe_answer(tmp_path: Path) -> None:
    path = fake_interpreter(tmp_path, "echo '{\"version\": \"3.12.0\"}'")
    message = why_missing(str(path))
    assert message is not None and "lacks" in message and "version_info" in message


def test_too_old(tmp_path: Path) -> None:
    path = fake_interpreter(tmp_path, probe_answer(version="2.7.18", version_info=[2, 7, 18]))
    assert resolve(str(path)) is None
    assert why_missing(str(path)) == f"{path} is Python 2.7.18; the servers need 3.11 or newer"


def test_hanging_program_is_killed_within_the_timeout(tmp_path: Path) -> None:
    # the sleep is a child of the shell: the whole process group must go, or its pipe keeps
    # the probe waiting
    marker = tmp_path / "pid"
    path = fake_interpreter(tmp_path, f"sleep 60 & echo $! > {marker}; wait")
    started = time.monotonic()
    message = why_missing(str(path), timeout=0.5)
    assert time.monotonic() - started < 5
    assert message == f"{path} did not answer the probe within 0.5 s"
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the probe's grandchild outlived the timeout"


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_freethreaded_alias_when_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interpreters, "FREETHREADED", tmp_path / "bin" / "python3.13t")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve("freethreaded") is None
    assert "run `make freethreaded`" in (why_missing("freethreaded") or "")
    assert "make freethreaded" in (why_missing("python3.13t") or "")


def test_python313t_falls_back_to_the_build(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    build = fake_interpreter(tmp_path, probe_answer(gil_enabled=False, free_threaded_build=True),
                             "python3.13t")
    monkeypatch.setattr(interpreters, "FREETHREADED", build)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for spec in ("python3.13t", "freethreaded"):
        found = resolve(spec)
        assert found is not None and found.path == build and not found.gil_enabled


def test_env_puts_the_repo_first_on_pythonpath(tmp_path: Path) -> None:
    found = resolve(str(fake_interpreter(tmp_path, probe_answer())))
    assert found is not None
    env = found.env({"PYTHONPATH": f"/elsewhere{os.pathsep}{REPO}", "HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert env["HOME"] == "/h"
    assert found.env({})["PYTHONPATH"] == str(REPO)
    assert found.command("-m", "servers") == [str(found.path), "-m", "servers"]


@needs_freethreaded
def test_freethreaded_build_has_the_gil_off() -> None:
    found = resolve("freethreaded")
    assert found is not None, why_missing("freethreaded")
    assert found.version.startswith("3.13")
    assert found.free_threaded_build and found.gil_enabled is False


@contextlib.contextmanager
def serving(interpreter: Interpreter, model: str) -> Iterator[tuple[str, int]]:
    """``python -m servers MODEL`` under ``interpreter``: its address once READY; always
    stopped (SIGTERM, then SIGKILL) and reaped, and it must exit 0 on SIGTERM."""
    argv = interpreter.command("-m", "servers", model)
    with tempfile.TemporaryFile() as stderr_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=interpreter.env(),
                                cwd=tempfile.gettempdir())
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
            line = proc.stdout.readline().decode() if ready else ""
            words = line.split()
            assert len(words) == 3 and words[0] == "READY", f"no READY line: {line!r}"
            yield words[1], int(words[2])
            proc.terminate()
            assert proc.wait(5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
            stderr_file.seek(0)
            print(stderr_file.read().decode(errors="replace"))


@pytest.mark.parametrize("spec", [
    "current",
    pytest.param("freethreaded", marks=needs_freethreaded),
])
def test_threaded_server_runs_under(spec: str) -> None:
    found = resolve(spec)
    assert found is not None, why_missing(spec)
    with serving(found, "threaded") as address, Client(*address) as client:
        payload = bytes(range(256)) * 4
        reply = client.request(Op.WORK, 100_000, payload)
        assert (reply.code, reply.value) == (Status.OK, work(payload, 100_000))
        assert client.echo(b"hi").payload == b"hi"
