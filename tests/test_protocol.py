"""Unit and property tests of the sans-IO codec, protocol/, against docs/protocol.md."""

from __future__ import annotations

import struct

import pytest
from _helpers import WORK_VECTORS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# the public surface (protocol/__init__.py), as a user imports it; protocol/session.py takes the
# same names from codec.py itself
from protocol import (
    HEADER,
    HEADER_SIZE,
    MAX_PAYLOAD,
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    OUTPUT_LIMIT,
    ErrorValue,
    Frame,
    FrameDecoder,
    Op,
    ProtocolError,
    ServerSession,
    Status,
    encode_error,
    encode_request,
    encode_response,
    respond,
    work,
)

U32 = 0xFFFFFFFF


def decode_all(data: bytes) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.feed(data)
    frames = decoder.frames()
    assert decoder.buffered == 0
    return frames


def assert_error(data: bytes, error: ErrorValue) -> None:
    """``data`` is exactly one ERROR frame with value ``error`` and a short UTF-8 message."""
    [frame] = decode_all(data)
    assert (frame.code, frame.value) == (Status.ERROR, error)
    assert 0 < len(frame.payload.decode("utf-8")) <= 200


# --- constants and encoders --------------------------------------------------------------


def test_constants_match_the_spec() -> None:
    assert HEADER.format == "!IBI" and HEADER_SIZE == 9
    assert MAX_PAYLOAD == 16_777_216
    assert MAX_WORK_ITERATIONS == MAX_SLEEP_US == 10_000_000
    assert OUTPUT_LIMIT == 1024 * 1024
    assert (Op.ECHO, Op.WORK, Op.SLEEP, Op.BYE) == (1, 2, 3, 4)
    assert (Status.OK, Status.ERROR) == (0, 1)
    assert [int(e) for e in ErrorValue] == [1, 2, 3, 4]


def test_encode_request_layout() -> None:
    assert encode_request(Op.ECHO, 7, b"ab") == b"\x00\x00\x00\x02\x01\x00\x00\x00\x07ab"
    assert encode_request(Op.WORK, U32) == b"\x00\x00\x00\x00\x02\xff\xff\xff\xff"
    assert encode_request(Op.BYE) == b"\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def test_encode_response_layout() -> None:
    assert encode_response(Status.OK, 0x01020304, b"x") == b"\x00\x00\x00\x01\x00\x01\x02\x03\x04x"
    big = bytes(300)
    assert encode_response(Status.OK, 0, big)[:4] == struct.pack("!I", 300)


def test_encode_error_is_utf8_message() -> None:
    data = encode_error(ErrorValue.OVER_CAPACITY, "plein à craquer")
    assert_error(data, ErrorValue.OVER_CAPACITY)
    assert decode_all(data)[0].payload.decode() == "plein à craquer"


# --- WORK --------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "n", "expected"), WORK_VECTORS,
                         ids=[f"{len(p)}B-n{n}" for p, n, _ in WORK_VECTORS])
def test_work_vectors(payload: bytes, n: int, expected: int) -> None:
    assert work(payload, n) == expected


# --- FrameDecoder ------------------------------------------------------------------------

FRAMES = [Frame(1, 0, b"hello"), Frame(2, 3, b"abc"), Frame(3, 1000, b""), Frame(255, U32, b"z")]
STREAM = b"".join(encode_request(*f) for f in FRAMES)


def test_decoder_merged_frames_in_one_chunk() -> None:
    assert decode_all(STREAM) == FRAMES


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_decoder_split_anywhere(split: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(STREAM[:split])
    first = decoder.frames()
    decoder.feed(STREAM[split:])
    assert first + decoder.frames() == FRAMES
    assert decoder.buffered == 0


def test_decoder_byte_by_byte() -> None:
    decoder = FrameDecoder()
    found = []
    for i in range(len(STREAM)):
        decoder.feed(STREAM[i : i + 1])
        while (frame := decoder.next_frame()) is not None:
            found.append(frame)
    assert found == FRAMES


def test_decoder_waits_for_whole_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_request(Op.ECHO, 0, b"abcdef")[:-1])
    assert decoder.next_frame() is None
    assert decoder.buffered == HEADER_SIZE + 5
    decoder.feed(memoryview(b"f"))
    assert decoder.next_frame() == Frame(Op.ECHO, 0, b"abcdef")
    assert decoder.next_frame() is None


def test_decoder_accepts_max_payload_header() -> None:
    decoder = FrameDecoder()
    decoder.feed(HEADER.pack(MAX_PAYLOAD, Op.ECHO, 0))
    assert decoder.next_frame() is None  # legal: it waits for the payload


@pytest.mark.parametrize("length", [MAX_PAYLOAD + 1, U32])
def test_decoder_rejects_oversize_before_payload(length: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_request(Op.ECHO, 0, b"ok") + HEADER.pack(length, Op.ECHO, 0))
    assert decoder.next_frame() == Frame(Op.ECHO, 0, b"ok")
    with pytest.raises(ProtocolError):
        decoder.next_frame()  # the header alone is enough: no payload byte was sent


def test_decoder_decodes_max_payload_frame() -> None:
    payload = b"\x5a" * MAX_PAYLOAD
    assert decode_all(encode_request(Op.ECHO, 0, payload)) == [Frame(Op.ECHO, 0, payload)]


# --- respond -----------------------------------------------------------------------------


def test_respond_echo_ignores_value() -> None:
    reply = respond(Op.ECHO, 12345, b"payload")
    assert decode_all(reply.data) == [Frame(Status.OK, 0, b"payload")]
    assert (reply.delay_us, reply.close) == (0, False)


def test_respond_echo_empty() -> None:
    assert respond(Op.ECHO, 0, b"").data == encode_response(Status.OK, 0, b"")


@pytest.mark.parametrize(("payload", "n", "expected"), WORK_VECTORS[:5])
def test_respond_work(payload: bytes, n: int, expected: int) -> None:
    reply = respond(Op.WORK, n, payload)
    assert decode_all(reply.data) == [Frame(Status.OK, expected, b"")]
    assert (reply.delay_us, reply.close) == (0, False)


@pytest.mark.parametrize("us", [0, 1, 250_000, MAX_SLEEP_US])
def test_respond_sleep_is_a_delay(us: int) -> None:
    reply = respond(Op.SLEEP, us, b"later")
    assert decode_all(reply.data) == [Frame(Status.OK, 0, b"later")]
    assert (reply.delay_us, reply.close) == (us, False)


def test_respond_bye_closes_with_empty_ok() -> None:
    reply = respond(Op.BYE, 99, b"ignored")
    assert decode_all(reply.data) == [Frame(Status.OK, 0, b"")]
    assert (reply.delay_us, reply.close) == (0, True)


@pytest.mark.parametrize("op", [0, 5, 6, 127, 255])
def test_respond_unknown_operation(op: int) -> None:
    reply = respond(op, 0, b"x")
    assert_error(reply.data, ErrorValue.UNKNOWN_OPERATION)
    assert (reply.delay_us, reply.close) == (0, False)


@pytest.mark.parametrize(("op", "value"), [(Op.WORK, MAX_WORK_ITERATIONS + 1), (Op.WORK, U32),
                                           (Op.SLEEP, MAX_SLEEP_US + 1), (Op.SLEEP, U32)])
def test_respond_argument_out_of_range(op: int, value: int) -> None:
    reply = respond(op, value, b"")
    assert_error(reply.data, ErrorValue.ARGUMENT_OUT_OF_RANGE)
    assert (reply.delay_us, reply.close) == (0, False)


# --- ServerSession -----------------------------------------------------------------------


def take(session: ServerSession) -> list[Frame]:
    """What a server would send now: decode and clear the session's output."""
    frames = decode_all(bytes(session.output))
    session.output.clear()
    return frames


def test_session_answers_in_order_across_chunks() -> None:
    session = ServerSession()
    data = encode_request(Op.ECHO, 0, b"a") + encode_request(Op.WORK, 3, b"abc")
    assert session.receive(data[:5], 0.0) is None
    assert take(session) == []
    session.receive(data[5:], 0.0)
    assert take(session) == [Frame(0, 0, b"a"), Frame(0, 4121632265, b"")]
    assert session.may_read and session.backlog == 0


def test_session_sleep_holds_later_replies() -> None:
    session = ServerSession()
    data = encode_request(Op.SLEEP, 1000, b"s") + encode_request(Op.ECHO, 0, b"e")
    assert session.receive(data, 10.0) == pytest.approx(10.001)
    assert take(session) == [] and not session.may_read
    assert session.advance(10.0005) == pytest.approx(10.001)
    assert take(session) == []
    assert session.advance(10.001) is None
    assert take(session) == [Frame(0, 0, b"s"), Frame(0, 0, b"e")]
    assert session.may_read


def test_session_consecutive_sleeps_chain() -> None:
    session = ServerSession()
    data = encode_request(Op.SLEEP, 500_000, b"1") + encode_request(Op.SLEEP, 250_000, b"2")
    assert session.receive(data, 0.0) == pytest.approx(0.5)
    assert session.advance(0.6) == pytest.approx(0.85)  # the second starts when the first ends
    assert take(session) == [Frame(0, 0, b"1")]
    assert session.advance(0.85) is None
    assert take(session) == [Frame(0, 0, b"2")]


def test_session_zero_sleep_is_immediate() -> None:
    session = ServerSession()
    data = encode_request(Op.SLEEP, 0, b"z") + encode_request(Op.ECHO, 0, b"e")
    assert session.receive(data, 0.0) is None and session.deadline is None  # no timer at all
    assert take(session) == [Frame(0, 0, b"z"), Frame(0, 0, b"e")]  # answered by receive itself
    assert session.may_read


def test_session_bye_answers_then_closes() -> None:
    session = ServerSession()
    data = (encode_request(Op.ECHO, 0, b"a") + encode_request(Op.BYE, 1, b"x")
            + encode_request(Op.ECHO, 0, b"after"))
    session.receive(data, 0.0)
    assert take(session) == [Frame(0, 0, b"a"), Frame(0, 0, b"")]
    assert session.closing and not session.may_read
    session.receive(encode_request(Op.ECHO, 0, b"more"), 0.0)
    assert take(session) == []


def test_session_sleep_then_bye() -> None:
    session = ServerSession()
    session.receive(encode_request(Op.SLEEP, 1000, b"s") + encode_request(Op.BYE), 0.0)
    assert not session.closing
    session.advance(1.0)
    assert take(session) == [Frame(0, 0, b"s"), Frame(0, 0, b"")]
    assert session.closing


def test_session_errors_keep_the_connection() -> None:
    session = ServerSession()
    session.receive(encode_request(9, 0, b"junk") + encode_request(Op.WORK, U32)
                    + encode_request(Op.SLEEP, MAX_SLEEP_US + 1) + encode_request(Op.ECHO), 0.0)
    frames = take(session)
    assert [(f.code, f.value) for f in frames] == [(1, 1), (1, 3), (1, 3), (0, 0)]
    assert not session.closing and session.may_read


@pytest.mark.parametrize("length", [MAX_PAYLOAD + 1, U32])
def test_session_frame_too_large(length: int) -> None:
    session = ServerSession()
    session.receive(encode_request(Op.ECHO, 0, b"a") + HEADER.pack(length, Op.ECHO, 0), 0.0)
    output = bytes(session.output)
    session.output.clear()
    [echo, error] = decode_all(output)
    assert echo == Frame(0, 0, b"a")
    assert_error(encode_response(error.code, error.value, error.payload),
                 ErrorValue.FRAME_TOO_LARGE)
    assert session.closing and not session.may_read
    session.receive(encode_request(Op.ECHO), 0.0)
    assert take(session) == []


def test_session_output_limit_pauses_and_resumes() -> None:
    size = 600 * 1024
    session = ServerSession()
    session.receive(b"".join(encode_request(Op.ECHO, 0, bytes([i]) * size) for i in range(3)), 0.0)
    assert len(session.output) >= OUTPUT_LIMIT  # two answered, then it paused
    assert session.backlog == HEADER_SIZE + size
    assert not session.may_read and session.wants_input  # held by the output alone
    assert [f.payload[0] for f in take(session)] == [0, 1]
    assert session.may_read  # output sent: reading may resume
    session.advance(0.0)  # ... and the backlog is answered on advance
    assert [f.payload[0] for f in take(session)] == [2]
    assert session.backlog == 0


def test_session_partial_send_keeps_bytes_in_order() -> None:
    session = ServerSession()
    session.receive(encode_request(Op.ECHO, 0, b"x" * 2_000_000) + encode_request(Op.ECHO), 0.0)
    sent = bytearray()
    for _ in range(100):  # bounded: a "socket" taking 100 KiB a call
        if not session.output and not session.backlog:
            break
        sent += session.output[:100_000]
        del session.output[:100_000]
        session.advance(0.0)
    assert decode_all(bytes(sent)) == [Frame(0, 0, b"x" * 2_000_000), Frame(0, 0, b"")]



# --- the connection's lifecycle ----------------------------------------------------------


def test_session_lifecycle_of_a_plain_connection() -> None:
    session = ServerSession()
    assert session.wants_input and session.may_read
    assert not session.wants_write and not session.finished
    session.receive(encode_request(Op.ECHO, 0, b"a"), 0.0)
    assert session.wants_write and not session.finished
    assert take(session) == [Frame(0, 0, b"a")]
    assert session.may_read and not session.wants_write and not session.finished


def test_session_finished_after_bye_once_output_is_sent() -> None:
    session = ServerSession()
    session.receive(encode_request(Op.BYE), 0.0)
    assert not session.may_read and session.wants_write and not session.finished
    take(session)
    assert session.finished


def test_session_eof_answers_sleeps_before_finishing() -> None:
    session = ServerSession()
    session.receive(encode_request(Op.SLEEP, 1000, b"s") + encode_request(Op.ECHO, 0, b"e"), 0.0)
    session.eof_received()
    assert not session.may_read and not session.finished  # the SLEEP is still due
    session.advance(1.0)
    check_wants_input(session)
    assert not session.finished  # answered, not yet sent
    assert take(session) == [Frame(0, 0, b"s"), Frame(0, 0, b"e")]
    assert session.finished


def test_session_eof_drops_a_partial_frame() -> None:
    session = ServerSession()
    session.receive(encode_request(Op.ECHO, 0, b"partial")[:-1], 0.0)
    assert session.backlog and not session.finished
    session.eof_received()
    assert not session.may_read and session.finished


def test_session_eof_waits_for_requests_held_by_the_output_limit() -> None:
    size = 600 * 1024
    session = ServerSession()
    session.receive(b"".join(encode_request(Op.ECHO, 0, bytes([i]) * size) for i in range(3)), 0.0)
    session.eof_received()
    take(session)  # sent elsewhere (a transport) before advance is called: one is still due
    assert not session.finished
    session.advance(0.0)
    assert [f.payload[0] for f in take(session)] == [2]
    assert session.finished


def test_session_parked_work_holds_reading_and_finishing() -> None:
    session = ServerSession(offload_from=10)
    session.receive(encode_request(Op.WORK, 10, b"w"), 0.0)
    assert session.pending_work is not None and not session.wants_input
    session.complete(respond(*session.pending_work).data, 0.0)
    assert session.wants_input  # answering resumed
    session.receive(encode_request(Op.WORK, 10, b"v"), 0.0)
    session.eof_received()
    assert session.pending_work is not None
    assert not session.may_read and not session.finished
    session.complete(respond(*session.pending_work).data, 0.0)
    check_wants_input(session)
    assert take(session) == [Frame(0, work(b"w", 10), b""), Frame(0, work(b"v", 10), b"")]
    assert session.finished


# --- properties --------------------------------------------------------------------------

frames_strategy = st.lists(
    st.builds(Frame, st.integers(0, 255), st.integers(0, U32), st.binary(max_size=300)),
    max_size=30,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@given(frames_strategy, st.lists(st.integers(0, 10_000), max_size=40))
def test_any_chunking_decodes_to_the_same_frames(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_request(*f) for f in frames)
    decoder = FrameDecoder()
    found = []
    for chunk in chunked(stream, cuts):
        decoder.feed(chunk)
        found += decoder.frames()
    assert found == frames
    assert decoder.buffered == 0


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
def test_random_bytes_raise_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder()
    try:
        for chunk in chunked(data, cuts):
            decoder.feed(chunk)
            for frame in decoder.frames():
                assert len(frame.payload) <= MAX_PAYLOAD
    except ProtocolError:
        pass


def check_wants_input(session: ServerSession) -> None:
    """The plain attribute agrees with the state it summarises."""
    assert session.wants_input == (not session.closing and not session.eof
                                   and session.deadline is None and session.pending_work is None)


def drive(session: ServerSession, chunks: list[bytes]) -> bytes:
    """Feed chunks as a server would (sending all output, waiting out each SLEEP)."""
    sent = bytearray()
    now = 0.0
    for chunk in chunks:
        if session.closing:
            break
        deadline = session.receive(chunk, now)
        check_wants_input(session)
        for _ in range(10_000):  # bounded: each turn answers at least one request
            sent += session.output
            session.output.clear()
            if deadline is None and not session.backlog:
                break
            now = max(now, deadline or now)
            deadline = session.advance(now)
            check_wants_input(session)
            if deadline is None and not session.output and session.backlog:
                break  # only a partial frame left: needs more bytes
    return bytes(sent)


small_requests = st.lists(
    st.one_of(
        st.builds(Frame, st.just(Op.ECHO), st.integers(0, U32), st.binary(max_size=200)),
        st.builds(Frame, st.just(Op.WORK), st.integers(0, 50), st.binary(max_size=20)),
        st.builds(Frame, st.sampled_from([Op.WORK, Op.SLEEP]),
                  st.integers(MAX_SLEEP_US + 1, U32), st.binary(max_size=5)),
        st.builds(Frame, st.just(Op.SLEEP), st.integers(0, 2000), st.binary(max_size=20)),
        st.builds(Frame, st.sampled_from([0, 5, 200]), st.integers(0, U32),
                  st.binary(max_size=20)),
        st.builds(Frame, st.just(Op.BYE), st.integers(0, U32), st.binary(max_size=5)),
    ),
    max_size=25,
)


@given(small_requests, st.lists(st.integers(0, 10_000), max_size=30))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_session_matches_respond_under_any_chunking(requests: list[Frame],
                                                    cuts: list[int]) -> None:
    stream = b"".join(encode_request(*f) for f in requests)
    expected = b""
    for frame in requests:
        reply = respond(*frame)
        expected += reply.data
        if reply.close:
            break
    assert drive(ServerSession(), chunked(stream, cuts)) == expected


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=10))
@settings(deadline=None)
def test_session_random_bytes_raise_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    session = ServerSession()
    try:
        output = drive(session, chunked(data, cuts))
    except ProtocolError:
        return
    decode_all(output)  # whatever it answered is well-formed frames
