"""Model-specific behaviour of uvloop, threadpool, reactor, prefork, gevent and iterative.

The conformance suite checks every model against the protocol; these tests check what each
of these models promises beyond it: the pool that queues, the loop that keeps serving while
WORK runs elsewhere, the worker processes that are spread, restarted and never orphaned,
greenlets rather than threads, one client at a time.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import psutil
import pytest
from _helpers import Client, answered_in_turns, close_all, connect_many, ok, wait_until
from _helpers_server import ServerProcess, need, running_server, sigterm_during_work

import servers
from protocol import MAX_WORK_ITERATIONS, Op, encode_request, work

pytestmark = pytest.mark.timeout(60)


def gone(pid: int) -> bool:
    """The process has exited (a zombie left for another reaper counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- options and availability --------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("threadpool", "--threads", "0"),
    ("reactor", "--threads", "0"),
    ("reactor", "--offload-from", "-1"),
    ("reactor", "--offload-from", str(MAX_WORK_ITERATIONS + 1)),
    ("prefork", "--workers", "0"),
], ids=lambda args: "_".join(args))
def test_impossible_model_options_refused(args: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, "-m", "servers", *args], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "READY" not in result.stdout
    assert args[1] in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(("model", "package"), [("uvloop", "uvloop"), ("gevent", "gevent")])
def test_optional_model_unavailable_without_its_package(
        monkeypatch: pytest.MonkeyPatch, model: str, package: str) -> None:
    module = servers.load(model)
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    reason = module.unavailable()
    assert reason is not None and package in reason


def test_uvloop_model_runs_on_uvloop() -> None:
    need("uvloop")
    with running_server("uvloop") as server, Client(*server.address) as client:
        assert client.echo(b"up") == ok(b"up")
        libraries = [m.path for m in server.process().memory_maps()]
        assert any("uvloop" in path for path in libraries)


# --- threadpool ----------------------------------------------------------------------------


def test_threadpool_queues_connections_beyond_its_threads() -> None:
    with running_server("threadpool", "--threads", "2") as server:
        first, second = connect_many(*server.address, 2)
        try:
            assert first.echo(b"1") == ok(b"1") and second.echo(b"2") == ok(b"2")
            with Client(*server.address) as third:  # accepted, then waits for a worker
                third.send_request(Op.ECHO, 0, b"3")
                time.sleep(0.3)
                assert third.nothing_pending(), "served with every worker busy"
                first.close()  # a worker frees up and takes the queued connection
                assert third.recv_frame() == ok(b"3")
                assert second.echo(b"still") == ok(b"still")
        finally:
            close_all([first, second])


def test_threadpool_serves_its_size_at_once_without_growing() -> None:
    threads = 64
    with running_server("threadpool", "--threads", str(threads)) as server:
        clients = connect_many(*server.address, threads)
        try:
            answered_in_turns(clients, Op.SLEEP, 1000)
            assert server.process().num_threads() == threads + 1  # the pool and the acceptor
        finally:
            close_all(clients)
        with Client(*server.address) as late:
            assert late.echo(b"late") == ok(b"late")
        assert server.process().num_threads() == threads + 1


# --- models that serve so many clients at once ----------------------------------------------


@pytest.mark.parametrize("model", [name for name in servers.available_models()
                                   if servers.clients_at_once(name) is not None])
def test_clients_at_once_is_what_the_model_serves(model: str) -> None:
    at_once = servers.clients_at_once(model)
    assert at_once is not None
    with running_server(model) as server:  # default options, as the declaration says
        clients = connect_many(*server.address, at_once)
        try:
            for i, client in enumerate(clients):
                assert client.echo(b"%d" % i) == ok(b"%d" % i)
            with Client(*server.address) as extra:
                extra.send_request(Op.ECHO, 0, b"extra")
                time.sleep(0.3)
                assert extra.nothing_pending(), f"served a client past CLIENTS_AT_ONCE={at_once}"
                clients[0].close()  # one leaves: the queued client is served
                assert extra.recv_frame() == ok(b"extra")
        finally:
            close_all(clients)


# --- iterative -----------------------------------------------------------------------------


def test_iterative_serves_one_client_at_a_time() -> None:
    with (running_server("iterative") as server, Client(*server.address) as first,
          Client(*server.address) as second):
        assert first.echo(b"1") == ok(b"1")
        second.send_request(Op.ECHO, 0, b"2")  # connected, queued in the backlog
        time.sleep(0.3)
        assert second.nothing_pending(), "a second client served while the first stays"
        assert first.echo(b"again") == ok(b"again")
        first.close()
        assert second.recv_frame() == ok(b"2")


# --- reactor -------------------------------------------------------------------------------


def test_reactor_keeps_serving_while_work_runs() -> None:
    n = MAX_WORK_ITERATIONS  # about 0.7 s of Python alone, far longer with the loop sharing
    with (running_server("reactor") as server, Client(*server.address, timeout=30) as busy,
          Client(*server.address) as other):
        busy.send_request(Op.WORK, n, b"busy")
        time.sleep(0.05)  # the WORK is out with a worker
        started = time.monotonic()
        for i in range(5):
            assert other.echo(b"%d" % i) == ok(b"%d" % i)
        took = time.monotonic() - started
        assert busy.nothing_pending(), "the WORK finished before the echoes: no evidence"
        assert busy.recv_frame() == ok(value=work(b"busy", n))
    print(f"5 echoes in {took * 1000:.1f} ms while a {n:,}-iteration WORK ran")


def test_reactor_offloaded_work_keeps_order_per_connection() -> None:
    with running_server("reactor", "--offload-from", "0", "--threads", "3") as server:
        clients = connect_many(*server.address, 6)
        try:
            for i, client in enumerate(clients):
                client.send(encode_request(Op.WORK, 200_000 + i, b"a%d" % i)
                            + encode_request(Op.ECHO, 0, b"b")
                            + encode_request(Op.WORK, i, b"c")
                            + encode_request(Op.SLEEP, 1000, b"d")
                            + encode_request(Op.WORK, 5000, b"e%d" % i)
                            + encode_request(Op.BYE))
            for i, client in enumerate(clients):
                assert client.expect_closed(timeout=20) == [
                    ok(value=work(b"a%d" % i, 200_000 + i)), ok(b"b"), ok(value=work(b"c", i)),
                    ok(b"d"), ok(value=work(b"e%d" % i, 5000)), ok()]
        finally:
            close_all(clients)


def test_reactor_forgets_work_of_a_connection_gone_meanwhile() -> None:
    with running_server("reactor", "--threads", "1") as server:
        quitter = Client(*server.address)
        quitter.send_request(Op.WORK, 2_000_000)
        time.sleep(0.05)
        quitter.reset()
        with Client(*server.address, timeout=20) as other:  # likely reuses the quitter's fd
            other.send(encode_request(Op.WORK, 3000, b"x") + encode_request(Op.ECHO, 0, b"y"))
            assert other.recv_frames(2) == [ok(value=work(b"x", 3000)), ok(b"y")]
        assert server.alive()


# --- prefork -------------------------------------------------------------------------------


def workers_of(server: ServerProcess, count: int) -> list[psutil.Process]:
    """The server's worker processes, once there are ``count`` of them."""
    found = wait_until(lambda: server.process().children(),
                       lambda children: len(children) == count, 5.0)
    assert len(found) == count, f"{len(found)} workers, expected {count}"
    return found


def test_prefork_spreads_connections_over_its_workers() -> None:
    with running_server("prefork", "--workers", "2") as server:
        workers = workers_of(server, 2)
        clients = connect_many(*server.address, 24)
        try:
            for i, client in enumerate(clients):
                assert client.echo(b"%d" % i) == ok(b"%d" % i)
            held = [sum(1 for c in worker.net_connections("tcp")
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port)
                    for worker in workers]
        finally:
            close_all(clients)
    assert sum(held) == 24 and min(held) > 0, f"connections per worker: {held}"


def test_prefork_restarts_a_worker_that_dies() -> None:
    with running_server("prefork", "--workers", "2") as server:
        victim, survivor = workers_of(server, 2)
        victim.kill()
        replaced = wait_until(lambda: {p.pid for p in server.process().children()},
                              lambda pids: len(pids) == 2 and victim.pid not in pids, 5.0)
        assert survivor.pid in replaced and victim.pid not in replaced and len(replaced) == 2
        assert wait_until(server.stderr_text, lambda text: "restarting" in text, 2.0)
        assert "SIGKILL" in server.stderr_text()
        clients = connect_many(*server.address, 16)  # both sockets are served again
        try:
            for i, client in enumerate(clients):
                assert client.echo(b"%d" % i) == ok(b"%d" % i)
        finally:
            close_all(clients)


def test_prefork_stop_reaps_every_worker() -> None:
    with running_server("prefork", "--workers", "3") as server:
        pids = [worker.pid for worker in workers_of(server, 3)]
        with Client(*server.address) as client:
            client.send_request(Op.SLEEP, 5_000_000)
            started = time.monotonic()
            assert server.stop() == 0
            assert time.monotonic() - started < 2.0
    assert all(gone(pid) for pid in pids)


def test_prefork_workers_die_with_the_parent() -> None:
    with running_server("prefork", "--workers", "2") as server:
        pids = [worker.pid for worker in workers_of(server, 2)]
        server.proc.send_signal(signal.SIGKILL)  # no chance to stop them itself
        server.proc.wait(5)
        left = wait_until(lambda: [pid for pid in pids if not gone(pid)], lambda x: not x, 3.0)
        for pid in left:  # never leave them running, even when the test fails
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        assert not left, f"workers outlived their parent: {left}"


# --- gevent --------------------------------------------------------------------------------


def test_gevent_serves_sleepers_on_greenlets_not_threads() -> None:
    need("gevent")
    count, sleep_s = 100, 0.5
    with running_server("gevent") as server:
        clients = connect_many(*server.address, count)
        try:
            started = time.monotonic()
            for i, client in enumerate(clients):
                client.send_request(Op.SLEEP, int(sleep_s * 1e6), b"%d" % i)
            time.sleep(sleep_s / 2)
            threads = server.process().num_threads()
            for i, client in enumerate(clients):
                assert client.recv_frame() == ok(b"%d" % i)
            elapsed = time.monotonic() - started
        finally:
            close_all(clients)
    assert threads <= 2, f"{threads} OS threads serving {count} sleeping connections"
    assert elapsed < 3 * sleep_s, f"{count} SLEEPs of {sleep_s} s took {elapsed:.2f} s"


# --- all of them: the two-second exit, with WORK running ----------------------------------

@pytest.mark.parametrize("model", [
    "reactor", "threadpool", "prefork", "gevent", "iterative", "uvloop", "asyncio", "epoll",
])
def test_stop_signal_interrupts_running_work(model: str) -> None:
    need(model)
    with running_server(model) as server:
        status, took = sigterm_during_work(server)
    assert status == 0
    print(f"{model} exited {took:.3f} s after SIGTERM")
