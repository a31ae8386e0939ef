"""Model-specific behaviour of the framework models (trio, anyio, twisted, tornado,
socketserver) and the thread- and interpreter-based ones (asyncio-threads, subinterpreters)
beyond conformance.

What each promises beyond the protocol: its options (anyio's backends, socketserver's
mixins, asyncio-threads' thread count), that it is listed only where its framework imports,
and the two-second exit with a long WORK running, which each framework needs its own way to
meet.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _helpers import Client, close_all, connect_many, wait_until
from _helpers_server import ServerProcess, need, running_server, sigterm_during_work

import servers
from bench.launch import LaunchedServer, server_argv
from bench.run.interpreters import Interpreter, resolve
from protocol import MAX_WORK_ITERATIONS, Op, work

pytestmark = pytest.mark.timeout(60)


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (so hiding a package cannot leak into this one)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def hiding(package: str, code: str) -> str:
    """``code`` run with ``import package`` failing."""
    return f"import sys\nsys.modules[{package!r}] = None\n{code}"


# --- options and availability --------------------------------------------------------------
# (the options each model refuses: tests/test_conformance.py's test_impossible_setting_refused)


@pytest.mark.parametrize(("model", "package"), [
    ("trio", "trio"), ("anyio", "anyio"), ("twisted", "twisted"), ("tornado", "tornado"),
])
def test_listed_only_where_its_framework_imports(model: str, package: str) -> None:
    code = hiding(package, "import servers\n"
                           f"print(servers.unavailable_reason({model!r}))\n"
                           f"print({model!r} in servers.available_models())")
    result = python(code)
    assert result.returncode == 0, result.stderr
    reason, listed = result.stdout.splitlines()
    assert package in reason and "pip install" in reason
    assert listed == "False"


def test_anyio_trio_backend_refused_without_trio() -> None:
    need("anyio")
    code = hiding("trio", "from servers.__main__ import main\n"
                          "sys.exit(main(['anyio', '--backend', 'trio']))")
    result = python(code)
    assert result.returncode != 0
    assert "--backend trio" in result.stderr and "trio" in result.stderr
    assert "READY" not in result.stdout and "Traceback" not in result.stderr, result.stderr


def test_anyio_serves_on_both_backends_side_by_side() -> None:
    """The same handler on asyncio and on trio: each answers, in order, with SLEEPs pending."""
    need("anyio")
    need("trio")
    with (running_server("anyio") as on_asyncio,
          running_server("anyio", "--backend", "trio") as on_trio):
        for server in (on_asyncio, on_trio):
            assert_sleeps_overlap(server, 3, 100_000, within_s=0.3)


# --- all of them: the two-second exit, with WORK running ----------------------------------


@pytest.mark.parametrize("argv", [
    ("trio",), ("anyio",), ("anyio", "--backend", "trio"), ("twisted",), ("tornado",),
    ("socketserver",), ("socketserver", "--mixin", "forking"), ("asyncio-threads",),
    ("asyncio-threads", "--threads", "4"),
], ids=lambda argv: "-".join(a.lstrip("-") for a in argv))
def test_stop_signal_interrupts_running_work(argv: tuple[str, ...]) -> None:
    """Three connections each with a 10M-iteration WORK (about 0.7 s each, one after another
    on a single thread): SIGTERM must not wait for them."""
    need(argv[0])
    with running_server(*argv) as server:
        status, took = sigterm_during_work(server)
        assert status == 0, server.stderr_text()
        assert "Traceback" not in server.stderr_text(), server.stderr_text()
    print(f"{' '.join(argv)} exited {took:.3f} s after SIGTERM")


def test_tornado_closes_a_client_gone_during_a_sleep_at_once() -> None:
    """Its close callback: a reset during a long SLEEP frees the descriptor straight away."""
    need("tornado")
    with running_server("tornado") as server:
        fds_before = server.usage()[0]
        client = Client(*server.address)
        client.send_request(Op.SLEEP, 5_000_000)
        wait_until(lambda: server.usage()[0], lambda fds: fds > fds_before, 2.0)
        client.reset()
        fds = wait_until(lambda: server.usage()[0], lambda fds: fds <= fds_before, 1.0)
        assert fds <= fds_before, "the connection is held until its SLEEP ends"


# --- socketserver --------------------------------------------------------------------------


def running(process: psutil.Process) -> bool:
    """Not exited (a zombie waiting for its reaper has exited)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children_of(server: ServerProcess, count: int) -> list[psutil.Process]:
    """The server's running child processes, once there are ``count`` of them."""
    return wait_until(lambda: [c for c in server.process().children() if running(c)],
                      lambda found: len(found) == count, 5.0)


def test_socketserver_threading_serves_a_thread_per_connection() -> None:
    with running_server("socketserver") as server:
        threads_before = server.process().num_threads()
        clients = connect_many(*server.address, 5)
        try:
            for i, client in enumerate(clients):
                assert client.echo(b"%d" % i).payload == b"%d" % i
            assert server.process().num_threads() == threads_before + 5
            assert children_of(server, 0) == []
        finally:
            close_all(clients)
        settled = wait_until(lambda: server.process().num_threads(),
                             lambda n: n == threads_before, 3.0)
        assert settled == threads_before


def test_socketserver_forking_serves_a_process_per_connection() -> None:
    with running_server("socketserver", "--mixin", "forking") as server:
        threads = server.process().num_threads()
        clients = connect_many(*server.address, 4)
        try:
            for i, client in enumerate(clients):
                assert client.echo(b"%d" % i).payload == b"%d" % i
            assert len(children_of(server, 4)) == 4
            assert server.process().num_threads() == threads
        finally:
            close_all(clients)
        assert children_of(server, 0) == [], "children outlived their connections"


def test_socketserver_forking_children_die_with_the_server() -> None:
    with running_server("socketserver", "--mixin", "forking") as server:
        clients = connect_many(*server.address, 2)
        try:
            for client in clients:
                assert client.echo(b"x").payload == b"x"
            children = children_of(server, 2)
            server.proc.send_signal(signal.SIGKILL)  # no chance to stop them itself
            server.proc.wait(5)
            left = wait_until(lambda: [c for c in children if running(c)],
                              lambda alive: not alive, 3.0)
            for child in left:  # never leave them running, even when the test fails
                child.kill()
            assert not left, f"children outlived the server: {[c.pid for c in left]}"
        finally:
            close_all(clients)


# --- asyncio-threads -----------------------------------------------------------------------


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (ss, from iproute2)."""
    done = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                          timeout=10, check=True)
    return sum(1 for line in done.stdout.splitlines() if line.strip())


def assert_sleeps_overlap(server: ServerProcess, connections: int, sleep_us: int,
                          within_s: float) -> None:
    """One SLEEP per connection, all sent at once: every answer, in order, within
    ``within_s`` (the SLEEPs overlapped: none waited for another)."""
    clients = connect_many(*server.address, connections)
    try:
        for i, client in enumerate(clients):
            client.send_request(Op.SLEEP, sleep_us, b"%d" % i)
        started = time.monotonic()
        for i, client in enumerate(clients):
            assert client.recv_frame().payload == b"%d" % i
        assert time.monotonic() - started < within_s
    finally:
        close_all(clients)


def threads_of(server: ServerProcess, count: int) -> int:
    """The server's thread count once it reaches ``count`` (READY comes before the threads)."""
    return wait_until(lambda: server.process().num_threads(), lambda n: n >= count, 3.0)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_asyncio_threads_runs_a_loop_per_thread_on_its_own_socket() -> None:
    with running_server("asyncio-threads", "--threads", "3") as server:
        assert threads_of(server, 3 + 1) == 3 + 1  # the loops and the supervisor
        assert listening_sockets(server.port) == 3
        assert_sleeps_overlap(server, 24, 200_000, within_s=0.6)  # on every loop


def test_asyncio_threads_defaults_to_the_cpus_it_may_use() -> None:
    cpus = len(os.sched_getaffinity(0))
    with running_server("asyncio-threads") as server:
        assert threads_of(server, cpus + 1) == cpus + 1


# --- subinterpreters -----------------------------------------------------------------------


def test_subinterpreters_listed_with_the_reason_where_it_cannot_run() -> None:
    reason = servers.unavailable_reason("subinterpreters")
    if reason is None:
        pytest.skip("this CPython has subinterpreters: see the next test")
    assert platform.python_version() in reason
    assert "concurrent.interpreters" in reason and "_interpreters" in reason
    listed = python("from servers.__main__ import main\nmain(['--list'])")
    assert "subinterpreters" not in listed.stdout.split()
    assert f"subinterpreters: not available here ({reason})" in listed.stderr
    refused = subprocess.run([sys.executable, "-m", "servers", "subinterpreters"],
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "READY" not in refused.stdout
    assert reason in refused.stderr


def interpreter_with_subinterpreters() -> Interpreter:
    """This CPython if it has them, else the first of the free-threaded build, python3.14 and
    python3.13 that exists (skip if none does)."""
    for spec in ("current", "freethreaded", "python3.14", "python3.13"):
        found = resolve(spec)
        if found is not None and tuple(map(int, found.version.split(".")[:2])) >= (3, 13):
            return found
    pytest.skip("no CPython 3.13 or newer here (make freethreaded builds one)")


def test_subinterpreters_serve_in_parallel_and_stop_mid_work(tmp_path: Path) -> None:
    """Under a CPython that has them: one interpreter (and thread) per --interpreters, each
    serving; SIGTERM with WORK running everywhere exits 0 within 2 s."""
    interpreter = interpreter_with_subinterpreters()
    count = 2
    launched = LaunchedServer(
        server_argv("subinterpreters", ("--interpreters", str(count)), str(interpreter.path)),
        tmp_path / "out", tmp_path / "err", env=interpreter.env())
    try:
        host, port = launched.wait_ready(15.0)
        process = psutil.Process(launched.pid)
        assert wait_until(process.num_threads, lambda n: n == count + 1, 5.0) == count + 1
        clients = connect_many(host, port, 8)
        try:
            for i, client in enumerate(clients):
                assert client.request(Op.WORK, 1000, b"%d" % i).value == work(b"%d" % i, 1000)
            for client in clients:
                client.send_request(Op.WORK, MAX_WORK_ITERATIONS)
            time.sleep(0.3)
            started = time.monotonic()
            launched.proc.terminate()
            status = launched.proc.wait(2.0)
        finally:
            close_all(clients)
        print(f"{interpreter.label}: exited {time.monotonic() - started:.3f} s after SIGTERM")
        assert status == 0, launched.stderr_text()
    finally:
        launched.stop()
