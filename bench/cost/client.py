"""The probe's client: blocking, one request in flight, round-robin over its connections.

Run outside valgrind and strace. One request at a time makes the server's work per request
independent of timing: every wake-up finds exactly one request on one connection, so the
counts do not depend on how requests happen to batch. Every reply is checked byte for byte
against ``protocol.respond`` (the protocol's own answer), so a broken server cannot pass for
a cheap one.
"""

from __future__ import annotations

import socket
from contextlib import suppress

from bench.cost.cases import CostCase
from protocol import FrameDecoder, respond


class ClientError(Exception):
    """The server answered wrongly, closed, or did not answer within the deadline."""


class Driver:
    """``case.connections`` connections to ``address``, each reply checked."""

    def __init__(self, address: tuple[str, int], case: CostCase, reply_timeout_s: float) -> None:
        self.case = case
        self.request = case.request()
        self.expected = respond(case.op, case.value, case.payload).data
        self.sockets: list[socket.socket] = []
        self.sent = 0
        try:
            for _ in range(case.connections):
                sock = socket.create_connection(address, timeout=reply_timeout_s)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets.append(sock)
        except OSError as error:
            self.close()
            raise ClientError(f"cannot connect to {address[0]}:{address[1]}: {error}") from None

    def send(self, count: int) -> None:
        """``count`` requests, round-robin over the connections, each answered before the next."""
        for _ in range(count):
            sock = self.sockets[self.sent % len(self.sockets)]
            try:
                sock.sendall(self.request)
                self._check(self._receive(sock, len(self.expected)))
            except TimeoutError:
                raise ClientError(f"no reply to request {self.sent + 1} within "
                                  f"{sock.gettimeout():g} s") from None
            except OSError as error:
                raise ClientError(f"request {self.sent + 1}: {error}") from None
            self.sent += 1

    @staticmethod
    def _receive(sock: socket.socket, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ClientError("the server closed the connection")
            data += chunk
        return bytes(data)

    def _check(self, data: bytes) -> None:
        if data == self.expected:
            return
        decoder = FrameDecoder()
        decoder.feed(data)
        frame = decoder.next_frame()
        raise ClientError(f"wrong reply to request {self.sent + 1}: {frame or data[:32]!r}")

    def close(self) -> None:
        for sock in self.sockets:
            with suppress(OSError):
                sock.close()
        self.sockets.clear()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
