"""clients.resp and the RESP wire: frames as Redis expects them, exact replies, reply framing,
and the swarm speaking it (``--protocol resp``) to toy servers that answer right, split,
coalesced, wrong, with errors, truncated or with bytes that are not RESP: every reply checked,
each wrong one counted as an error of its kind. (Against a real redis-server:
tests/test_swarm_redis.py.)"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from _helpers import ToyListener
from hypothesis import given
from hypothesis import strategies as st

from clients.config import SwarmConfig, SwarmError
from clients.mix import CONCBENCH, MixEntry
from clients.record import EXIT_ERRORS, exit_status
from clients.resp import (
    RESP,
    RespError,
    build_resp_kind,
    classify,
    encode_command,
    parse_resp_mix,
    reply_end,
)
from clients.swarm import run_swarm
from clients.wire import WIRES, wire_for


def test_frames_are_redis_arrays_of_bulk_strings() -> None:
    assert encode_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    ping = build_resp_kind("ping", 0)
    assert ping.frame == b"*1\r\n$4\r\nPING\r\n" and ping.check == b"+PONG\r\n"
    assert ping.reply_length == 7 and ping.full_check
    echo = build_resp_kind("echo", 5, payload_seed=3)
    payload = echo.frame[-7:-2]
    assert echo.frame == b"*2\r\n$4\r\nECHO\r\n$5\r\n" + payload + b"\r\n"
    assert echo.check == b"$5\r\n" + payload + b"\r\n" and echo.reply_length == 11
    assert build_resp_kind("echo", 5, payload_seed=4).check != echo.check  # seeded payloads
    empty = build_resp_kind("echo", 0)
    assert empty.frame == b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n" and empty.check == b"$0\r\n\r\n"


def test_mix_parsing() -> None:
    assert parse_resp_mix("ping,echo:64=2") == [MixEntry("ping", 0, 1.0), MixEntry("echo", 64, 2.0)]
    assert parse_resp_mix(" PING:0 ") == [MixEntry("ping", 0, 1.0)]
    for bad in ("get:1", "echo", "echo:x", "ping=0", "ping:3", "echo:-1", "ping,,echo:1",
                "echo:1=inf", ""):
        with pytest.raises(RespError):
            parse_resp_mix(bad)


@given(st.lists(st.builds(MixEntry, op=st.sampled_from(["ping", "echo"]),
                          arg=st.integers(0, 1_000_000),
                          weight=st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=5))
def test_the_wire_formats_a_mix_that_parses_back(entries: list[MixEntry]) -> None:
    entries = [MixEntry(e.op, e.arg if e.op == "echo" else 0, e.weight) for e in entries]
    parsed = RESP.parse_mix(RESP.format_mix(entries))
    assert [(e.op, e.arg) for e in parsed] == [(e.op, e.arg) for e in entries]
    for got, want in zip(parsed, entries, strict=True):
        assert math.isclose(got.weight, want.weight, rel_tol=1e-5)


def test_reply_end_splits_partial_and_pipelined_replies() -> None:
    echo = build_resp_kind("echo", 64).check
    stream = b"+PONG\r\n" + echo + b"-ERR unknown\r\n:12\r\n$-1\r\n"
    ends, pos = [], 0
    while (end := reply_end(stream, pos, len(stream))) is not None:
        ends.append(end)
        pos = end
    assert ends == [7, 7 + len(echo), 7 + len(echo) + 14, 7 + len(echo) + 19, len(stream)]
    for cut in range(1, len(echo)):  # any partial bulk string waits for more
        assert reply_end(echo[:cut], 0, cut) is None
        assert reply_end(bytearray(b"xx" + echo), 2, 2 + cut) is None  # from an offset
    assert reply_end(bytearray(b"xx" + echo + b"yy"), 2, 2 + len(echo)) == 2 + len(echo)
    with pytest.raises(RespError):
        reply_end(b"*1\r\n", 0, 4)
    with pytest.raises(RespError):
        reply_end(b"$3\r\nabcXY", 0, 9)
    with pytest.raises(RespError):
        reply_end(b"$x\r\n", 0, 4)
    with pytest.raises(RespError):  # a line that never ends is not RESP
        reply_end(b"+" + b"a" * 70_000, 0, 70_001)


def test_wrong_replies_are_named() -> None:
    assert classify(b"-ERR wrong\r\n") == "error_resp"
    assert classify(b"+PANG\r\n") == "mismatch"
    assert classify(b"-ERR max number of clients reached\r\n") == "over_capacity"
    data = bytearray(b"xx-ERR wrong\r\n")
    assert RESP.classify(data, 2, len(data)) == ("error_resp", True, False)
    data = bytearray(b"-ERR max number of clients reached\r\n")
    assert RESP.classify(data, 0, len(data)) == ("over_capacity", True, True)
    assert RESP.classify(b"$1\r\nx\r\n", 0, 7) == ("mismatch", False, False)


def test_the_wires_are_registered_by_name() -> None:
    assert set(WIRES) == {"concbench", "resp"}
    assert wire_for("resp") is RESP and wire_for("concbench") is CONCBENCH
    with pytest.raises(KeyError, match="known: concbench, resp"):
        wire_for("http")
    assert RESP.describe(MixEntry("ping", 0, 1)) == "ping"
    assert RESP.slow_frame.startswith(b"*2\r\n$4\r\nECHO\r\n$4096\r\n")
    assert CONCBENCH.reply_end(b"\x00\x00\x00\x02\x00\x00\x00\x00\x00ab", 0, 11) == 11
    assert CONCBENCH.reply_end(b"\x00\x00\x00\x02\x00\x00\x00\x00\x00a", 0, 10) is None
    with pytest.raises(ValueError):  # over MAX_PAYLOAD: cannot resynchronise
        CONCBENCH.reply_end(b"\xff\xff\xff\xff\x00\x00\x00\x00\x00", 0, 9)


def test_settings_the_resp_swarm_refuses() -> None:
    for settings, words in [({"protocol": "http"}, "--protocol"),
                            ({"protocol": "resp", "mix": "work:10"}, "work"),
                            ({"protocol": "resp", "mix": "ping:1"}, "ping")]:
        with pytest.raises(SwarmError, match=words):
            run_swarm(SwarmConfig(target="127.0.0.1:1", **settings))  # type: ignore[arg-type]


# ------------------------------------------------------------------ the swarm against toys

Script = Callable[[int], bytes | None]  # the nth request's reply; None: say nothing more


class RespToy(ToyListener):
    """A RESP server in threads: each connection's nth request (a frame of ``size`` bytes) is
    answered ``script(n)``, sent ``chunk`` bytes at a time, or with ``together`` replies in one
    write; it counts the replies it sent. ``fin_with_reply``: the reply that ``close_after``
    ends on goes out in one segment with the close (TCP_CORK, then shutdown), so that the
    client is told of both at once."""

    def __init__(self, size: int, script: Script, chunk: int = 0, together: int = 1,
                 close_after: int = 0, fin_with_reply: bool = False) -> None:
        self.size, self.script, self.chunk = size, script, chunk
        self.together, self.close_after = together, close_after
        self.fin_with_reply = fin_with_reply
        self.sent = 0
        super().__init__(sock_timeout=0.1)

    def _serve(self, sock: socket.socket) -> None:
        buffer, count, pending = b"", 0, b""
        with sock:
            for data in self.received(sock):
                buffer += data
                while len(buffer) >= self.size:
                    buffer = buffer[self.size:]
                    count += 1
                    reply = self.script(count)
                    if reply is None:
                        self.stopping.wait(30)  # silence until the test ends
                        return
                    pending += reply
                    last = bool(self.close_after) and count >= self.close_after
                    if last and self.fin_with_reply:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                    if count % self.together == 0:
                        self._send(sock, pending)
                        pending = b""
                    with self.lock:
                        self.sent += 1
                    if last:
                        if self.fin_with_reply:
                            sock.shutdown(socket.SHUT_WR)  # the FIN joins the corked reply
                        return

    def _send(self, sock: socket.socket, data: bytes) -> None:
        step = self.chunk or len(data)
        with contextlib.suppress(OSError):
            for start in range(0, len(data), step):
                sock.sendall(data[start:start + step])
                if self.chunk:
                    time.sleep(0.0002)


@contextlib.contextmanager
def resp_toy(size: int, script: Script, **options: int) -> Iterator[RespToy]:
    toy = RespToy(size, script, **options)
    try:
        yield toy
    finally:
        toy.close()


def resp_run(target: str, **settings: object) -> dict[str, object]:
    values: dict[str, object] = {"connections": 2, "duration": 0.6, "warmup": 0.2,
                                 "timeout": 1.0, "seed": 7, "protocol": "resp", "mix": "ping"}
    values.update(settings)
    return run_swarm(SwarmConfig(target=target, **values))  # type: ignore[arg-type]


PING = build_resp_kind("ping", 0)
ECHO = build_resp_kind("echo", 300, payload_seed=0)  # the swarm's first kind has seed 0


def test_split_and_coalesced_replies_are_whole_correct_replies() -> None:
    """Replies a few bytes at a time (the slow path reassembles them) and several in one
    write (pipelined): all correct, no error, every one the server sent counted."""
    with resp_toy(len(ECHO.frame), lambda n: ECHO.check, chunk=5) as toy:
        split = resp_run(toy.target, mix="echo:300")
    assert split["errors"] == {} and split["complete"]
    assert split["totals"]["answered_ok"] == toy.sent > 0  # type: ignore[index]
    with resp_toy(len(PING.frame), lambda n: PING.check, together=3) as toy:
        coalesced = resp_run(toy.target, pipeline=3)
    assert coalesced["errors"] == {} and coalesced["protocol"] == "resp"
    assert coalesced["totals"]["answered_ok"] == toy.sent > 0  # type: ignore[index]


def test_wrong_and_error_replies_are_errors_of_their_kind() -> None:
    """A bulk string of the right length but other bytes is a mismatch, ``-ERR`` an
    error_resp (the connection goes on), then silence: a timeout."""
    def script(n: int) -> bytes | None:
        if n == 1:
            return b"$300\r\n" + b"x" * 300 + b"\r\n"
        if n == 2:
            return b"-ERR unknown command\r\n"
        if n == 3:
            return ECHO.check  # right again
        return None

    with resp_toy(len(ECHO.frame), script) as toy:
        record = resp_run(toy.target, connections=1, mix="echo:300", timeout=0.4)
    assert record["errors"] == {"mismatch": 1, "error_resp": 1, "timeout": 1}, record["errors"]
    assert record["totals"]["answered_ok"] == 1  # type: ignore[index]
    assert exit_status(record) == EXIT_ERRORS


def test_partial_replies_and_bytes_that_are_not_resp() -> None:
    """Half a reply and then the connection closes: eof, the request lost, also when the close
    comes in the same segment (the swarm's edge-triggered watch reports both at once); an
    array where a simple string belongs: protocol; Redis's max-clients error: over_capacity,
    closed."""
    for together in (False, True):
        with resp_toy(len(PING.frame), lambda n: b"+PO", close_after=1,
                      fin_with_reply=together) as toy:
            cut = resp_run(toy.target, connections=1, timeout=3.0)
        assert cut["errors"] == {"eof": 1}, (together, cut["errors"])
        assert cut["totals"]["lost_in_flight"] == 1  # type: ignore[index]
    with resp_toy(len(PING.frame), lambda n: b"*1\r\n+PONG\r\n") as toy:
        garbage = resp_run(toy.target, connections=1)
    assert garbage["errors"] == {"protocol": 1}
    with resp_toy(len(PING.frame),
                  lambda n: b"-ERR max number of clients reached\r\n") as toy:
        full = resp_run(toy.target, connections=2)
    assert full["errors"] == {"over_capacity": 2}
