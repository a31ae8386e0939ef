"""Every rule of docs/protocol.md, on real sockets, for every model (see conftest.py).

Each test starts its own server process (``server`` fixture), so one model's failure cannot
leak into the next test; every client operation has a timeout, so nothing can hang.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from _helpers import (
    WORK_VECTORS,
    Client,
    answered_in_turns,
    close_all,
    connect_many,
    exchange,
    ok,
    wait_until,
)
from _helpers_server import (
    ModelSpec,
    ServerProcess,
    assert_refused,
    model_specs,
    need,
    run_launcher,
    running_server,
)

import servers
from bench import resources
from protocol import (
    HEADER,
    MAX_PAYLOAD,
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    ErrorValue,
    Frame,
    Op,
    Status,
    encode_request,
    launch,
    work,
)

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
U32 = 0xFFFFFFFF
QUICK = 1.5  # seconds a client may wait for a round trip while other connections misbehave
CORE_MODELS = ("threaded", "select", "poll", "epoll", "asyncio", "nonblocking")


def assert_error(frame: Frame, error: ErrorValue) -> None:
    """An ERROR frame with this value and a short UTF-8 message."""
    assert (frame.code, frame.value) == (Status.ERROR, error), frame
    assert 0 < len(frame.payload.decode("utf-8")) <= 200


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 7919 + seed).randbytes(size)


# --- launch contract ---------------------------------------------------------------------


def test_ready_line_on_loopback(server: ServerProcess) -> None:
    assert server.host == "127.0.0.1"  # the default host
    assert 0 < server.port < 65536  # the real port, not the 0 asked for
    with Client(*server.address) as client:
        assert client.echo(b"up") == ok(b"up")


def test_list_names_the_core_models() -> None:
    result = subprocess.run([sys.executable, "-m", "servers", "--list"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert set(CORE_MODELS) <= set(names)
    assert set(names) == set(servers.available_models())


def test_bad_option_refused(server_spec: ModelSpec) -> None:
    assert_refused(run_launcher(server_spec.model, *server_spec.args, "--no-such-option"))


def test_port_in_use_refused(server_spec: ModelSpec) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        assert_refused(run_launcher(server_spec.model, *server_spec.args, "--port", str(port)))


@pytest.mark.parametrize("args", [
    ("no-such-model",),
    ("threaded", "--port", "70000"),
    ("threaded", "--port", "-1"),
    ("epoll", "--trigger", "sideways"),
    ("asyncio", "--api", "telepathy"),
    ("nonblocking", "--idle-sleep", "-1"),
    ("asyncio-threads", "--threads", "0"),
    ("asyncio-threads", "--threads", "257"),
    ("socketserver", "--mixin", "greenlets"),
    ("anyio", "--backend", "curio"),
], ids=lambda args: "_".join(args))
def test_impossible_setting_refused(args: tuple[str, ...]) -> None:
    """Refused with a message that names the unknown model or the option at fault."""
    if args[0] in servers.MODELS:
        need(args[0])
    result = run_launcher(*args)
    assert_refused(result)
    at_fault = args[1] if len(args) > 1 else args[0]
    assert at_fault in result.stderr, result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_cleanly(server_spec: ModelSpec, signum: int) -> None:
    """Exit 0 within 2 s of SIGTERM/SIGINT, with connections open, a SLEEP pending, a half
    frame held and a reader that does not read."""
    with running_server(server_spec.model, *server_spec.args) as server:
        clients = connect_many(*server.address, 4)
        try:
            idle, sleeper, half, hog = clients
            assert idle.echo(b"x") == ok(b"x")
            sleeper.send_request(Op.SLEEP, 5_000_000)
            half.send(encode_request(Op.ECHO, 0, b"12345")[:7])
            hog.send_some(encode_request(Op.ECHO, 0, bytes(MIB)) * 4)  # not read
            time.sleep(0.05)  # let the server take it all in
            assert server.alive()
            started = time.monotonic()
            server.proc.send_signal(signum)
            try:
                status = server.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                pytest.fail("still running 2 s after the signal")
            print(f"exited in {time.monotonic() - started:.3f} s")
        finally:
            close_all(clients)
        assert status == 0, server.stderr_text()
        server.stop()
        assert server.stdout_extra == b"", "stdout carries only the READY line"


# --- ECHO, WORK, SLEEP, BYE ----------------------------------------------------------------


def test_echo_sizes(server: ServerProcess) -> None:
    with Client(*server.address, timeout=20) as client:
        for size in (0, 1, 8, 9, 1000, 65_536, 1_000_003, 4 * MIB):
            payload = payload_of(size)
            assert client.request(Op.ECHO, U32, payload) == ok(payload), f"{size} B"


def test_echo_max_payload(server: ServerProcess) -> None:
    payload = os.urandom(MAX_PAYLOAD)  # the largest legal frame
    with Client(*server.address, timeout=20) as client:
        assert client.echo(payload) == ok(payload)
        assert client.echo(b"after") == ok(b"after")


def test_pipelined_large_echoes(server: ServerProcess) -> None:
    """Responses well past the 1 MiB output bound: reading pauses and resumes, nothing lost."""
    payloads = [payload_of(MIB + 1, seed) for seed in range(8)]
    data = b"".join(encode_request(Op.ECHO, 0, p) for p in payloads)
    with Client(*server.address, timeout=20) as client:
        assert exchange(client, data, len(payloads)) == [ok(p) for p in payloads]


def test_work_vectors(server: ServerProcess) -> None:
    with Client(*server.address) as client:
        for payload, n, expected in WORK_VECTORS:
            assert client.request(Op.WORK, n, payload) == ok(value=expected)
        client.send(b"".join(encode_request(Op.WORK, n, p) for p, n, _ in WORK_VECTORS))
        assert client.recv_frames(len(WORK_VECTORS)) == [ok(value=x) for _, _, x in WORK_VECTORS]


def test_sleep_does_not_delay_other_connections(server: ServerProcess) -> None:
    sleep_s = 0.3
    with Client(*server.address, QUICK) as sleeper, Client(*server.address, QUICK) as other:
        assert sleeper.echo(b"a") == ok(b"a") and other.echo(b"b") == ok(b"b")
        started = time.monotonic()
        sleeper.send_request(Op.SLEEP, int(sleep_s * 1e6), b"slept")
        for i in range(20):
            assert other.echo(b"%d" % i) == ok(b"%d" % i)
        quick = time.monotonic() - started
        if quick < sleep_s * 0.9:
            assert sleeper.nothing_pending(), "SLEEP answered early"
        assert sleeper.recv_frame() == ok(b"slept")
        waited = time.monotonic() - started
    print(f"20 echoes in {quick * 1000:.1f} ms during a {sleep_s * 1000:.0f} ms SLEEP")
    assert quick < sleep_s / 2, f"20 echoes took {quick:.3f} s behind another's SLEEP"
    # libuv (uvloop) keeps its loop time in whole milliseconds, cached at each iteration: a
    # timer may fire up to a millisecond before the monotonic clock reaches it
    assert waited >= sleep_s - 0.001


def test_sleeps_on_many_connections_overlap(server: ServerProcess) -> None:
    sleep_s, count = 0.2, 10
    clients = connect_many(*server.address, count, QUICK)
    try:
        for client in clients:
            assert client.echo(b"") == ok()
        started = time.monotonic()
        for i, client in enumerate(clients):
            client.send_request(Op.SLEEP, int(sleep_s * 1e6), b"%d" % i)
        for i, client in enumerate(clients):
            assert client.recv_frame() == ok(b"%d" % i)
        elapsed = time.monotonic() - started
    finally:
        close_all(clients)
    assert sleep_s <= elapsed < 3 * sleep_s, f"{count} parallel SLEEPs took {elapsed:.3f} s"


def test_sleep_keeps_order_on_its_connection(server: ServerProcess) -> None:
    with Client(*server.address) as client:
        started = time.monotonic()
        client.send(encode_request(Op.SLEEP, 100_000, b"a") + encode_request(Op.ECHO, 0, b"b")
                    + encode_request(Op.WORK, 3, b"abc") + encode_request(Op.SLEEP, 0, b"c")
                    + encode_request(Op.ECHO, 0, b"d"))
        first = client.recv_frame()
        assert time.monotonic() - started >= 0.1
        assert [first, *client.recv_frames(4)] == [
            ok(b"a"), ok(b"b"), ok(value=4121632265), ok(b"c"), ok(b"d")]


def test_bye_answers_then_closes(server: ServerProcess) -> None:
    with Client(*server.address) as client:
        client.send(encode_request(Op.ECHO, 0, b"first") + encode_request(Op.BYE, 7, b"bye")
                    + encode_request(Op.ECHO, 0, b"never answered"))
        assert client.expect_closed() == [ok(b"first"), ok()]
    with Client(*server.address) as client:  # BYE after a pending SLEEP waits for it
        client.send(encode_request(Op.SLEEP, 50_000, b"s") + encode_request(Op.BYE))
        assert client.expect_closed() == [ok(b"s"), ok()]


# --- rules 1 and 2: order, pipelining, framing -------------------------------------------


def mixed_requests(count: int, seed: int) -> tuple[list[bytes], list[Frame]]:
    """``count`` requests of every kind with their expected responses (errors as ERROR 1/3
    frames with an empty payload: compare those with ``assert_same``)."""
    rng = random.Random(seed)
    requests, expected = [], []
    for i in range(count):
        kind = i % 5
        payload = rng.randbytes(rng.choice((0, 1, 10, 100, 1000)))
        if kind == 0:
            requests.append(encode_request(Op.ECHO, rng.getrandbits(32), payload))
            expected.append(ok(payload))
        elif kind == 1:
            n = rng.randrange(50)
            requests.append(encode_request(Op.WORK, n, payload))
            expected.append(ok(value=work(payload, n)))
        elif kind == 2:
            requests.append(encode_request(Op.SLEEP, rng.choice((0, 0, 1, 100)), payload))
            expected.append(ok(payload))
        elif kind == 3:
            requests.append(encode_request(rng.choice((0, 5, 99, 255)), 0, payload))
            expected.append(Frame(Status.ERROR, ErrorValue.UNKNOWN_OPERATION, b""))
        else:
            op = rng.choice((Op.WORK, Op.SLEEP))
            requests.append(encode_request(op, MAX_SLEEP_US + 1 + rng.getrandbits(16), payload))
            expected.append(Frame(Status.ERROR, ErrorValue.ARGUMENT_OUT_OF_RANGE, b""))
    return requests, expected


def assert_same(frames: list[Frame], expected: list[Frame]) -> None:
    assert len(frames) == len(expected)
    for i, (frame, want) in enumerate(zip(frames, expected, strict=True)):
        if want.code == Status.ERROR:
            assert_error(frame, ErrorValue(want.value))
        else:
            assert frame == want, f"response {i} differs"


def test_pipelined_2000_in_order(server: ServerProcess) -> None:
    requests, expected = mixed_requests(2000, seed=1)
    with Client(*server.address, timeout=20) as client:
        assert_same(exchange(client, b"".join(requests), len(requests)), expected)
        assert client.echo(b"still open") == ok(b"still open")


def test_frames_byte_by_byte(server: ServerProcess) -> None:
    requests, expected = mixed_requests(10, seed=2)
    stream = b"".join(requests)
    with Client(*server.address, timeout=10) as client:
        chunks = [stream[i : i + 1] for i in range(min(len(stream), 400))]
        chunks.append(stream[400:])
        assert_same(exchange(client, chunks, len(requests), pause=0.0002), expected)


def test_frames_in_random_chunks(server: ServerProcess) -> None:
    """Frames split and merged at random points in the same stream."""
    requests, expected = mixed_requests(300, seed=3)
    stream = b"".join(requests)
    rng = random.Random(4)
    cuts = sorted(rng.sample(range(1, len(stream)), 200))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    with Client(*server.address, timeout=10) as client:
        assert_same(exchange(client, chunks, len(requests), pause=0.0005), expected)


# --- rules 3, 4, 5: errors and endings -----------------------------------------------------


def test_unknown_operation_keeps_connection(server: ServerProcess) -> None:
    with Client(*server.address) as client:
        for op in (0, 5, 200, 255):
            assert_error(client.request(op, 7, b"p" * 1000), ErrorValue.UNKNOWN_OPERATION)
            assert client.echo(b"%d" % op) == ok(b"%d" % op)


def test_argument_out_of_range_keeps_connection(server: ServerProcess) -> None:
    with Client(*server.address) as client:
        for op, value in ((Op.WORK, MAX_WORK_ITERATIONS + 1), (Op.WORK, U32),
                          (Op.SLEEP, MAX_SLEEP_US + 1), (Op.SLEEP, U32)):
            assert_error(client.request(op, value, b"arg"), ErrorValue.ARGUMENT_OUT_OF_RANGE)
            assert client.echo(b"ok") == ok(b"ok")


@pytest.mark.parametrize("length", [MAX_PAYLOAD + 1, U32], ids=["max+1", "u32max"])
def test_frame_too_large_answers_then_closes(server: ServerProcess, length: int) -> None:
    with Client(*server.address) as client:
        # the header alone must be enough: the payload never comes
        client.send(encode_request(Op.ECHO, 0, b"before") + HEADER.pack(length, Op.ECHO, 0))
        first, *rest = client.expect_closed()
        assert first == ok(b"before")
        assert len(rest) == 1
        assert_error(rest[0], ErrorValue.FRAME_TOO_LARGE)


@pytest.mark.parametrize("cut", [4, 9 + 3], ids=["in-header", "in-payload"])
def test_eof_mid_frame_closes_quietly(server: ServerProcess, cut: int) -> None:
    with Client(*server.address) as client:
        half = encode_request(Op.ECHO, 0, b"12345")[:cut]
        client.send(encode_request(Op.ECHO, 0, b"whole") + half)
        client.sock.shutdown(socket.SHUT_WR)
        assert client.expect_closed() == [ok(b"whole")]


def test_half_close_still_answered(server: ServerProcess) -> None:
    """A client that sends its requests and then shuts down its sending side gets every answer."""
    with Client(*server.address) as client:
        client.send(encode_request(Op.SLEEP, 50_000, b"s") + encode_request(Op.ECHO, 0, b"e")
                    + encode_request(Op.WORK, 1))
        client.sock.shutdown(socket.SHUT_WR)
        assert client.expect_closed() == [ok(b"s"), ok(b"e"), ok(value=12345)]


# --- rule 6: nothing one connection does stops the others ----------------------------------


def test_bad_clients_do_not_hurt_others(server: ServerProcess) -> None:
    address = server.address
    rng = random.Random(5)
    with Client(*address, QUICK) as good:
        assert good.echo(b"before") == ok(b"before")
        bad = connect_many(*address, 8)
        try:
            garbage, half_header, half_payload, reset_mid, reset_sleep, reset_full = bad[:6]
            garbage.send(rng.randbytes(64 * 1024))
            half_header.send(encode_request(Op.ECHO, 0, b"x")[:4])
            half_payload.send(encode_request(Op.ECHO, 0, bytes(MIB))[: 100 * 1024])
            reset_mid.send(encode_request(Op.ECHO, 0, b"abcdef")[:11])
            reset_sleep.send_request(Op.SLEEP, 200_000, b"z")
            reset_full.sock.settimeout(0.3)
            with contextlib.suppress(TimeoutError):  # responses pile up unread, then reset
                reset_full.send(encode_request(Op.ECHO, 0, bytes(64 * 1024)) * 40)
            bad[6].send(rng.randbytes(1000))
            for client in (reset_mid, reset_sleep, reset_full, bad[6], bad[7]):
                client.reset()
            for i in range(20):
                assert good.request(Op.WORK, i, b"g") == ok(value=work(b"g", i))
            time.sleep(0.25)  # the reset SLEEP's deadline passes
            assert good.request(Op.SLEEP, 1000, b"s") == ok(b"s")
        finally:
            close_all(bad)
        assert good.echo(b"after") == ok(b"after")
    with Client(*address) as late:
        assert late.echo(b"new") == ok(b"new")


def peak_rss(server: ServerProcess, samples: int = 4, interval: float = 0.05) -> int:
    """The largest RSS seen over a few samples (a server still busy may still be growing)."""
    peak = 0
    for _ in range(samples):
        peak = max(peak, server.usage()[2])
        time.sleep(interval)
    return peak


PUSHED = 64 * MIB  # echo requests a client sends without reading (the kernel holds ~10-40 MB)
RSS_GROWTH_LIMIT = 32 * MIB  # a server that buffered them would grow by about PUSHED


def test_slow_reader_does_not_stall_others_or_grow_memory(fresh_server: ServerProcess) -> None:
    """A client pipelining echo requests without reading: the server must stop reading it
    (rule 7), keep serving the others, and keep its memory bounded."""
    server = fresh_server
    frame_payload = 64 * 1024
    request = encode_request(Op.ECHO, 0, bytes(frame_payload))
    with Client(*server.address, QUICK) as other, Client(*server.address, QUICK) as hog:
        assert other.echo(b"warm") == ok(b"warm") and hog.echo(b"warm") == ok(b"warm")
        rss_before = server.usage()[2]
        hog.sock.settimeout(0.2)
        sent = 0
        stop_at = time.monotonic() + 15
        while sent < PUSHED and time.monotonic() < stop_at:
            try:
                sent += hog.sock.send(request)  # may be partial; the stream stays in order
            except TimeoutError:
                break  # the server stopped reading: backpressure reached the client
        hog.sock.settimeout(hog.timeout)
        started = time.monotonic()
        for i in range(20):
            assert other.echo(b"%d" % i) == ok(b"%d" % i)
        others_took = time.monotonic() - started
        growth = peak_rss(server) - rss_before
        print(f"sent {sent / MIB:.1f} MiB unread; RSS grew {growth / MIB:.1f} MiB; "
              f"20 echoes for another client in {others_took * 1000:.1f} ms")
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / MIB:.1f} MiB"
        assert others_took < QUICK
        whole = sent // len(request)
        frames = hog.recv_frames(whole, timeout=30)  # nothing lost while paused
        assert all(f == ok(bytes(frame_payload)) for f in frames)


SMALL_RCVBUF = 4096  # bytes: the client's receive window stays tiny, the kernel holds little
NEVER_READS_TRIES = 3


def test_reader_that_never_reads_from_its_connect(fresh_server: ServerProcess) -> None:
    """Rule 7 when the requests are there before the server first reads: clients with a
    4 KiB receive buffer that pipeline 64 KiB echoes from their connect, never reading, one
    after another. A server whose reading starts unpaused and is paused only after a wait
    (anyio's asyncio stream did) buffers all of it on some tries and not others."""
    server = fresh_server
    request = encode_request(Op.ECHO, 0, bytes(64 * 1024))
    with Client(*server.address, QUICK) as warm:
        assert warm.echo(b"warm") == ok(b"warm")
    rss_before = server.usage()[2]
    for attempt in range(NEVER_READS_TRIES):
        hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        hog.connect(server.address)
        hog.settimeout(0.2)
        sent, stop_at = 0, time.monotonic() + 5
        with hog:
            while sent < PUSHED and time.monotonic() < stop_at:
                try:
                    sent += hog.send(request)
                except TimeoutError:
                    break  # backpressure reached the client
            growth = peak_rss(server) - rss_before
            print(f"try {attempt + 1}: sent {sent / MIB:.1f} MiB unread; "
                  f"RSS grew {growth / MIB:.1f} MiB")
            assert growth < RSS_GROWTH_LIMIT, f"try {attempt + 1}: RSS grew {growth / MIB:.1f} MiB"
    with Client(*server.address, QUICK) as other:
        assert other.echo(b"after") == ok(b"after")


@pytest.mark.serial  # its CPU figure is the server's own: run alone (see conftest.py)
def test_out_of_descriptors_keeps_serving(server_spec: ModelSpec) -> None:
    """Rule 8: out of descriptors (64, for the server's processes alone), a server keeps
    answering the connections it holds, does not spin (CPU from its own processes, bound
    20 % of a core against ~100 % per spinning process), accepts again within about a
    second of the others leaving, and never exits. The probe is ``bench.resources``."""
    outcome = resources.probe(server_spec.model, server_spec.args, name=server_spec.id)
    print(resources.describe(outcome))
    if not outcome.limit_reached and outcome.processes > resources.HELD:
        pytest.skip(f"{server_spec.id} holds each connection in a process of its own "
                    f"({outcome.processes} processes): the limit never binds")
    assert outcome.limit_reached, "the server never ran out of descriptors: nothing tested"
    assert outcome.failures() == []


def test_200_concurrent_clients(server: ServerProcess) -> None:
    clients = connect_many(*server.address, 200, QUICK)
    try:
        answered_in_turns(clients, Op.ECHO, 0)
        for i, client in enumerate(clients):
            client.send_request(Op.WORK, i, b"w")
        for i, client in enumerate(clients):
            assert client.recv_frame() == ok(value=work(b"w", i))
    finally:
        close_all(clients)


def settled_usage(server: ServerProcess) -> tuple[int, int]:
    """(fds, threads) once two readings 0.05 s apart agree (at most 2 s)."""
    readings = [server.usage()[:2]]

    def probe() -> tuple[int, int]:
        readings.append(server.usage()[:2])
        return readings[-1]

    return wait_until(probe, lambda now: readings[-2] == now, 2.0, interval=0.05)


def test_no_fd_or_thread_left_behind(fresh_server: ServerProcess) -> None:
    server = fresh_server
    with Client(*server.address, QUICK) as warm:  # lets lazily created machinery exist first
        assert warm.request(Op.SLEEP, 1000, b"w") == ok(b"w")
    baseline = settled_usage(server)
    clients = connect_many(*server.address, 50, QUICK)
    try:
        for i, client in enumerate(clients):
            kind = i % 5
            if kind == 0:
                client.send_request(Op.ECHO, 0, b"x")
            elif kind == 1:
                client.send_request(Op.BYE)
            elif kind == 2:
                client.send(encode_request(Op.ECHO, 0, b"half")[:10])
            elif kind == 3:
                client.send_request(Op.SLEEP, 100_000)
            else:  # as much as fits, unread
                client.send_some(encode_request(Op.ECHO, 0, bytes(300 * 1024)) * 4)
        for client in clients[2::5]:  # the half-frame ones are held open while the others go
            assert client.nothing_pending()
        held = wait_until(lambda: server.usage()[0], lambda fds: fds >= baseline[0] + 35, 3.0)
        assert held >= baseline[0] + 35, "the server does not hold the connections' fds?"
        for i, client in enumerate(clients):
            (client.reset if i % 2 else client.close)()
    finally:
        close_all(clients)
    settled = wait_until(lambda: server.usage()[:2],
                         lambda now: now[0] <= baseline[0] and now[1] <= baseline[1], 5.0)
    assert settled[0] <= baseline[0], f"fds: {baseline[0]} before, {settled[0]} after"
    assert settled[1] <= baseline[1], f"threads: {baseline[1]} before, {settled[1]} after"
    with Client(*server.address) as after:
        assert after.echo(b"fine") == ok(b"fine")


# --- select past FD_SETSIZE -----------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    _soft, _hard, problem = launch.raise_fd_limit(needed)
    if problem:
        pytest.skip(f"needs {needed} file descriptors: {problem}")


def free_fds_below(pid: int, limit: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return sum(1 for fd in range(limit) if fd not in used)


@pytest.mark.timeout(90)
def test_select_turns_away_past_fd_setsize() -> None:
    if "select" not in servers.available_models():
        pytest.skip("the select model is not available here")
    fd_setsize, total = 1024, 1100
    raise_fd_limit(total + 200)
    with running_server("select") as server:
        warm = Client(*server.address)  # held: its descriptor stays in use
        clients = [warm]
        try:
            assert warm.echo(b"") == ok()
            room = free_fds_below(server.pid, fd_setsize)
            assert room < total
            clients += connect_many(*server.address, total, timeout=10)
            readable = wait_until(lambda: [c for c in clients if not c.nothing_pending()],
                                  lambda found: len(found) >= total - room, 10.0)
            assert len(readable) == total - room, "exactly the excess connections hear first"
            turned_away = set(readable)
            for client in readable:
                [frame] = client.expect_closed()
                assert_error(frame, ErrorValue.OVER_CAPACITY)
            kept = [c for c in clients if c not in turned_away]
            for i, client in enumerate(kept):
                client.send_request(Op.ECHO, 0, b"%d" % i)
            for i, client in enumerate(kept):
                assert client.recv_frame() == ok(b"%d" % i)
            close_all(kept[:10])  # room again: new connections are served
            wait_until(lambda: free_fds_below(server.pid, fd_setsize), lambda n: n >= 10, 5.0)
            with Client(*server.address) as late:
                assert late.echo(b"late") == ok(b"late")
        finally:
            close_all(clients)


# --- the conformance contract itself ------------------------------------------------------


def test_xfail_declarations_name_real_tests() -> None:
    tests = {name for name in globals() if name.startswith("test_")}
    for name in servers.available_models():
        declared = getattr(servers.load(name), "CONFORMANCE_XFAIL", {})
        assert isinstance(declared, dict)
        unknown = set(declared) - tests
        assert not unknown, f"{name}.CONFORMANCE_XFAIL names no test: {sorted(unknown)}"
        assert all(isinstance(reason, str) and reason for reason in declared.values())


def test_variants_cover_the_registry() -> None:
    ids = [spec.id for spec in model_specs()]
    assert len(ids) == len(set(ids))
    assert set(servers.available_models()) <= set(ids)
