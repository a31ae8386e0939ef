"""The original lesson's interactive client: type a line, see the server's answer.

Each line goes out as ECHO and the echoed text is printed. ``work N`` sends WORK with N
iterations and prints the result; ``sleep US`` sends SLEEP for US microseconds; ``end`` sends
BYE and exits. End of input (Ctrl-D, or the end of a pipe) also says BYE and exits.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import TextIO

from clients.config import SwarmError, parse_target
from protocol import (
    MAX_SLEEP_US,
    MAX_WORK_ITERATIONS,
    ErrorValue,
    Frame,
    FrameDecoder,
    Op,
    Status,
    encode_request,
)

RECV_CHUNK = 64 * 1024


class ServerGone(Exception):
    """The server closed the connection or did not answer in time."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for an answer beyond any SLEEP (default 30)")


class ChatClient:
    """One blocking connection; ``request`` sends a frame and waits for its answer."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()

    def close(self) -> None:
        self.sock.close()

    def request(self, op: int, value: int = 0, payload: bytes = b"",
                extra_wait: float = 0.0) -> Frame:
        self.sock.sendall(encode_request(op, value, payload))
        deadline = time.monotonic() + self.timeout + extra_wait
        while (frame := self.decoder.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerGone(f"no answer within {self.timeout + extra_wait:g} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(RECV_CHUNK)
            except TimeoutError:
                continue
            except OSError as error:
                raise ServerGone(f"connection lost: {error}") from None
            if not chunk:
                raise ServerGone("the server closed the connection")
            self.decoder.feed(chunk)
        return frame


def describe_error(frame: Frame) -> str:
    try:
        name = ErrorValue(frame.value).name
    except ValueError:
        name = "unknown"
    return f"ERROR {frame.value} ({name}): {frame.payload.decode(errors='replace')}"


def _number(word: str, limit: int) -> int | None:
    return int(word) if word.isdigit() and int(word) <= limit else None


def handle_line(client: ChatClient, line: str, out: TextIO, err: TextIO) -> bool:
    """Act on one typed line; False once the conversation is over (``end``)."""
    words = line.split()
    command = words[0] if words else ""
    if command == "end" and len(words) == 1:
        frame = client.request(Op.BYE)
        print("bye" if frame.code == Status.OK else describe_error(frame), file=out)
        return False
    if command in ("work", "sleep") and len(words) == 2:
        limit = MAX_WORK_ITERATIONS if command == "work" else MAX_SLEEP_US
        value = _number(words[1], limit)
        if value is None:
            print(f"usage: {command} N, with N a whole number up to {limit:,}", file=err)
            return True
        if command == "work":
            frame = client.request(Op.WORK, value)
            answer = f"work {value} = {frame.value}"
        else:
            started = time.monotonic()
            frame = client.request(Op.SLEEP, value, extra_wait=value / 1e6)
            elapsed = (time.monotonic() - started) * 1e3
            answer = f"slept {value} us (answer after {elapsed:.1f} ms)"
    else:
        frame = client.request(Op.ECHO, 0, line.encode())
        answer = frame.payload.decode(errors="replace")
    print(answer if frame.code == Status.OK else describe_error(frame), file=out)
    return True


def converse(client: ChatClient, lines: TextIO, out: TextIO, err: TextIO,
             prompt: bool) -> None:
    """Read lines until ``end`` or end of input (then say BYE)."""
    while True:
        if prompt:
            print("> ", end="", file=out, flush=True)
        line = lines.readline()
        if not line:
            client.request(Op.BYE)
            if prompt:
                print(file=out)
            return
        if not handle_line(client, line.rstrip("\r\n"), out, err):
            return
        out.flush()


def main(options: argparse.Namespace) -> int:
    try:
        host, port = parse_target(options.target)
    except SwarmError as error:
        print(f"chat: {error}", file=sys.stderr)
        return 2
    try:
        client = ChatClient(host, port, options.timeout)
    except OSError as error:
        print(f"chat: cannot connect to {options.target}: {error}", file=sys.stderr)
        return 2
    try:
        converse(client, sys.stdin, sys.stdout, sys.stderr, prompt=sys.stdin.isatty())
    except ServerGone as error:
        print(f"chat: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    finally:
        client.close()
    return 0
