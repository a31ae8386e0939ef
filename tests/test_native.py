"""The ``native`` reference model (C server) and the native load client.

The conformance suite runs every rule against ``native`` too; this file checks what is
particular to it: the on-demand build, that ``python -m servers native`` becomes the C
process, byte-for-byte agreement with ``protocol.ServerSession``, the child mode for
other programs, and the native client.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.selfcheck import native_client
from protocol import Op, ServerSession, Status, encode_request, work
from servers import native
from tests._helpers import Client, wait_until
from tests.conftest import ServerProcess, running_server

pytestmark = pytest.mark.skipif(native.unavailable() is not None,
                                reason=f"native model unavailable: {native.unavailable()}")


@pytest.fixture(scope="module")
def native_server() -> Iterator[ServerProcess]:
    """One native server shared by this module's protocol tests."""
    with running_server("native") as server:
        yield server
        assert server.alive(), "the native server died during the tests"


def test_build_is_reused_until_the_source_changes() -> None:
    binary = native.build_server()
    built_at = binary.stat().st_mtime_ns
    assert native.build_server() == binary
    assert binary.stat().st_mtime_ns == built_at  # not rebuilt
    assert native.is_current(native.SOURCE, binary)


def test_build_failure_and_missing_compiler_are_clear(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return undefined_name; }\n")
    with pytest.raises(native.BuildError, match="undefined_name"):
        native.build(broken)
    assert not list((tmp_path / "build").iterdir())  # no half-written binary left

    source = tmp_path / "server.c"
    shutil.copy(native.SOURCE, source)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(native, "SOURCE", source)
    assert native.find_compiler() is None
    assert "no C compiler" in (native.unavailable() or "")
    with pytest.raises(native.BuildError, match="no C compiler"):
        native.build(source)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_launch_contract_and_exec(signum: int) -> None:
    with running_server("native") as server:
        assert server.host == "127.0.0.1" and server.port > 0
        # the launcher execs the binary after READY: then the process is the C server itself
        binary = native.build_server().resolve()
        exe = wait_until(lambda: Path(server.process().exe()).resolve(), binary.__eq__, 5)
        assert exe == binary
        with Client(*server.address) as client:
            assert client.echo(b"x") == (Status.OK, 0, b"x")
        started = time.monotonic()
        assert server.stop(signum) == 0
        assert time.monotonic() - started < 2.0
        assert server.stdout_extra == b""


def test_echo_work_and_bye(native_server: ServerProcess) -> None:
    with Client(*native_server.address) as client:
        assert client.echo(b"hello") == (Status.OK, 0, b"hello")
        payload = bytes(range(256)) * 4
        assert client.request(Op.WORK, 100_000, payload) == (Status.OK, 1549966598, b"")
        assert client.request(Op.WORK, 1000, b"hello world").value == 118134621
        assert client.request(Op.WORK, 10_000_000).code == Status.OK  # the limit itself
        assert client.request(Op.WORK, 10_000_001).value == 3  # argument out of range
        assert client.request(Op.BYE) == (Status.OK, 0, b"")
        assert client.expect_closed() == []


def test_sleep_holds_only_its_own_connection(native_server: ServerProcess) -> None:
    with Client(*native_server.address) as sleeper, Client(*native_server.address) as other:
        started = time.monotonic()
        sleeper.send_request(Op.SLEEP, 300_000, b"late")
        assert other.echo(b"now") == (Status.OK, 0, b"now")
        assert time.monotonic() - started < 0.25
        assert sleeper.recv_frame() == (Status.OK, 0, b"late")
        assert time.monotonic() - started >= 0.3


_requests = st.one_of(
    st.tuples(st.just(Op.ECHO), st.integers(0, 2**32 - 1), st.binary(max_size=300)),
    st.tuples(st.just(Op.WORK), st.sampled_from([0, 1, 77, 5_000, 10_000_001, 2**32 - 1]),
              st.binary(max_size=40)),
    st.tuples(st.just(Op.SLEEP), st.sampled_from([0, 1, 2_000, 10_000_001]),
              st.binary(max_size=40)),
    st.tuples(st.sampled_from([0, 5, 200, 255]), st.integers(0, 2**32 - 1),
              st.binary(max_size=40)),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(_requests, min_size=1, max_size=25), bye=st.booleans(),
       chunk=st.integers(1, 97))
def test_byte_for_byte_as_the_reference_session(native_server: ServerProcess,
                                                requests: list[tuple[int, int, bytes]],
                                                bye: bool, chunk: int) -> None:
    """Any request stream, sent in arbitrary pieces: the same bytes as ``ServerSession``."""
    stream = b"".join(encode_request(op, value, payload) for op, value, payload in requests)
    if bye:
        stream += encode_request(Op.BYE) + encode_request(Op.ECHO, 0, b"after bye")
    expected = ServerSession()
    deadline = expected.receive(stream, 0.0)
    for _ in range(len(requests)):  # let each SLEEP deadline pass in turn
        if deadline is None:
            break
        deadline = expected.advance(deadline)
    assert deadline is None and (expected.closing or not expected.backlog)
    received = bytearray()
    with Client(*native_server.address) as client:
        try:
            for start in range(0, len(stream), chunk):
                client.send(stream[start:start + chunk])
            client.sock.shutdown(socket.SHUT_WR)  # end of stream: the server answers, closes
        except OSError:
            if not bye:  # after BYE the server closes: later bytes may meet a closed socket
                raise
        deadline = time.monotonic() + 10
        with contextlib.suppress(ConnectionResetError):
            while time.monotonic() < deadline and (data := client.sock.recv(65536)):
                received += data
    assert bytes(received) == bytes(expected.output)


def test_over_limit_frame_is_answered_then_closed(native_server: ServerProcess) -> None:
    with Client(*native_server.address) as client:
        client.send(encode_request(Op.ECHO, 0, b"ok") + (16 * 1024 * 1024 + 1).to_bytes(4, "big")
                    + bytes(5))
        frames = client.expect_closed()
    assert frames[0] == (Status.OK, 0, b"ok")
    assert frames[1].code == Status.ERROR and frames[1].value == 2
    assert len(frames) == 2


def test_child_mode_outside_the_launcher_is_stopped_and_reaped(tmp_path: Path) -> None:
    """``serve`` called from another program runs the binary as a child and reaps it."""
    script = textwrap.dedent("""
        from servers import native
        from servers._base import Shutdown, announce, install_shutdown_handlers, make_listener
        install_shutdown_handlers()
        listener = make_listener("127.0.0.1", 0)
        announce(listener)
        try:
            native.serve(listener, None)
        except Shutdown:
            pass
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[2])
        with Client("127.0.0.1", port) as client:
            assert client.echo(b"child") == (Status.OK, 0, b"child")
        children = psutil.Process(proc.pid).children()
        assert [Path(child.exe()).name for child in children] == ["server"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        gone, alive = psutil.wait_procs(children, timeout=2)
        assert not alive
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def test_native_client_drives_the_native_server(native_server: ServerProcess) -> None:
    result = native_client.run_client(*native_server.address, connections=8, duration=0.5,
                                      warmup=0.1)
    assert result["exit_status"] == 0, result
    assert result["errors"] == {"connect": 0, "mismatch": 0, "eof": 0, "reset": 0, "timeout": 0}
    assert result["responses"] > 100
    assert result["throughput_rps"] == pytest.approx(result["responses"] / result["duration_s"])
    assert 0 < result["cpu_percent"] <= 110


def test_native_client_refuses_bad_usage_and_reports_refused_connections() -> None:
    with running_server("native") as server:
        binary = native_client.build_client()
        command = native_client.client_command(binary, *server.address, connections=2,
                                               duration=0.3, warmup=0, payload=0)
        command[command.index("--payload") + 1] = "-1"  # invalid: usage error, exit 2
        assert subprocess.run(command, capture_output=True, timeout=10).returncode == 2
    # the server is gone now: connections are refused, reported as connect errors
    result = native_client.run_client(*server.address, connections=2, duration=0.3, warmup=0)
    assert result["exit_status"] == 1
    assert result["errors"]["connect"] == 2


def test_work_agrees_with_the_reference_for_large_payloads(native_server: ServerProcess) -> None:
    payload = bytes(range(251)) * 300  # exercises the CRC32 table across many bytes
    with Client(*native_server.address) as client:
        assert client.request(Op.WORK, 12345, payload).value == work(payload, 12345)
