"""clients.resp: RESP frames as Redis expects them, exact replies, and reply framing."""

from __future__ import annotations

import pytest

from clients.resp import (
    RespError,
    build_resp_kind,
    classify,
    encode_command,
    parse_resp_mix,
    reply_end,
)


def test_frames_are_redis_arrays_of_bulk_strings() -> None:
    assert encode_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    ping = build_resp_kind("ping", 0)
    assert ping.frame == b"*1\r\n$4\r\nPING\r\n" and ping.check == b"+PONG\r\n"
    echo = build_resp_kind("echo", 5, payload_seed=3)
    payload = echo.frame[-7:-2]
    assert echo.frame == b"*2\r\n$4\r\nECHO\r\n$5\r\n" + payload + b"\r\n"
    assert echo.check == b"$5\r\n" + payload + b"\r\n" and echo.reply_length == 11


def test_mix_parsing() -> None:
    assert parse_resp_mix("ping,echo:64=2") == [("ping", 0, 1.0), ("echo", 64, 2.0)]
    for bad in ("get:1", "echo", "echo:x", "ping=0"):
        with pytest.raises(RespError):
            parse_resp_mix(bad)


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
    with pytest.raises(RespError):
        reply_end(b"*1\r\n", 0, 4)
    with pytest.raises(RespError):
        reply_end(b"$3\r\nabcXY", 0, 9)


def test_wrong_replies_are_named() -> None:
    assert classify(b"-ERR wrong\r\n") == "error_resp"
    assert classify(b"+PANG\r\n") == "mismatch"
