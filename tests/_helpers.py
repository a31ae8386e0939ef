"""Test helpers: a small blocking protocol client with a timeout on everything, the OK frame a
test expects, polling, a threaded loopback listener for toy servers, the start of a child a test
interrupts, and a scenario file written from a test's text.

Built on ``protocol`` (``FrameDecoder``, ``encode_request``): the tests never restate the
wire format.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from protocol import Frame, FrameDecoder, Op, Status, encode_request

DEFAULT_TIMEOUT = 5.0  # seconds any single client operation may take before the test fails
RECV_CHUNK = 256 * 1024

T = TypeVar("T")


def sigint_at_default() -> None:
    """``preexec_fn`` for a child the test sends SIGINT, as a terminal's Ctrl-C would: SIGINT at
    its default in the child. A shell starts a background job (``nohup make test &`` from a
    script) with SIGINT ignored, the children inherit that across exec, and Python installs no
    KeyboardInterrupt handler for a SIGINT ignored at start, so the child would not stop; the
    tools keep that convention (a background job outlives the terminal's Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ConnectionClosed(Exception):
    """The server closed the connection (end of stream or reset) where a frame was expected."""


class Client:
    """One blocking connection to a server under test; every call is bounded in time."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        """Send all of ``data`` (bounded by the socket timeout)."""
        self.sock.sendall(data)

    def send_some(self, data: bytes) -> int:
        """Send what the socket takes now, without waiting; the count sent."""
        self.sock.settimeout(0.0)
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        finally:
            self.sock.settimeout(self.timeout)

    def send_request(self, op: int, value: int = 0, payload: bytes = b"") -> None:
        self.send(encode_request(op, value, payload))

    def request(self, op: int, value: int = 0, payload: bytes = b"") -> Frame:
        """One round trip."""
        self.send_request(op, value, payload)
        return self.recv_frame()

    def echo(self, payload: bytes) -> Frame:
        return self.request(Op.ECHO, 0, payload)

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """The next response frame; ``ConnectionClosed`` if the stream ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (frame := self.decoder.next_frame()) is None:
            if not self._recv_some(deadline):
                raise ConnectionClosed(f"closed with {self.decoder.buffered} bytes of a frame")
        return frame

    def recv_frames(self, count: int, timeout: float | None = None) -> list[Frame]:
        """The next ``count`` frames, all within one deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return [self.recv_frame(max(0.0, deadline - time.monotonic())) for _ in range(count)]

    def expect_closed(self, timeout: float | None = None) -> list[Frame]:
        """Read to the end of the stream; return the whole frames that came before it.

        Raises ``AssertionError`` if trailing bytes do not form whole frames, ``TimeoutError``
        if the server keeps the connection open.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        frames = []
        while True:
            frames += self.decoder.frames()
            if not self._recv_some(deadline):
                break
        frames += self.decoder.frames()
        assert self.decoder.buffered == 0, f"{self.decoder.buffered} bytes of a partial frame"
        return frames

    def nothing_pending(self) -> bool:
        """True if nothing (no byte, no end of stream) has arrived yet, without waiting."""
        if self.decoder.buffered:
            return False
        self.sock.settimeout(0.0)  # with a timeout, recv would first wait for readability
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return False

    def _recv_some(self, deadline: float) -> bool:
        """Read one chunk into the decoder; False at end of stream or reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response from the server in time")
        self.sock.settimeout(min(remaining, self.timeout))
        try:
            data = self.sock.recv(RECV_CHUNK)
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            return False
        self.decoder.feed(data)
        return True

    def reset(self) -> None:
        """Abort the connection: close with SO_LINGER 0, so the server sees a reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def exchange(client: Client, data: bytes | list[bytes], count: int,
             timeout: float | None = None, pause: float = 0.0) -> list[Frame]:
    """Send ``data`` (one buffer, or chunks written one by one with ``pause`` seconds between)
    from a helper thread while reading ``count`` frames, so neither side of a large pipelined
    exchange can block the other."""
    chunks = [data] if isinstance(data, bytes) else data
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for chunk in chunks:
                client.sock.sendall(chunk)
                if pause:
                    time.sleep(pause)
        except BaseException as error:  # reported in the calling thread
            errors.append(error)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        frames = client.recv_frames(count, timeout)
    finally:
        sender.join(client.timeout)
    if errors:
        raise errors[0]
    assert not sender.is_alive(), "the sender did not finish"
    return frames


def connect_many(host: str, port: int, count: int,
                 timeout: float = DEFAULT_TIMEOUT) -> list[Client]:
    """Open ``count`` connections (all closed again if one fails)."""
    clients: list[Client] = []
    try:
        for _ in range(count):
            clients.append(Client(host, port, timeout))
    except BaseException:
        close_all(clients)
        raise
    return clients


def close_all(clients: Iterable[Client]) -> None:
    for client in clients:
        client.close()


def write_scenario(folder: Path, body: str) -> Path:
    """A scenario file, ``body`` dedented, in ``folder``; its path."""
    path = folder / "tiny.toml"
    path.write_text(textwrap.dedent(body))
    return path


def ok(payload: bytes = b"", value: int = 0) -> Frame:
    """The OK response a test expects."""
    return Frame(Status.OK, value, payload)


def answered_in_turns(clients: list[Client], op: Op, value: int, turns: int = 3) -> None:
    """Each turn, every client sends one ``op`` request (``value``, a payload naming the client
    and the turn) before any reads; then every client gets its own payload back, OK."""
    for turn in range(turns):
        for i, client in enumerate(clients):
            client.send_request(op, value, b"%d:%d" % (i, turn))
        for i, client in enumerate(clients):
            assert client.recv_frame() == ok(b"%d:%d" % (i, turn))


def wait_until(probe: Callable[[], T], accept: Callable[[T], bool], timeout: float,
               interval: float = 0.05) -> T:
    """Poll ``probe`` until ``accept`` holds for its value or ``timeout`` passes; the last value."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not accept(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


# docs/protocol.md, "Test vectors (payload, n -> x)"
WORK_VECTORS = [
    (b"", 0, 0),
    (b"", 1, 12345),
    (b"abc", 0, 891568578),
    (b"abc", 3, 4121632265),
    (b"hello world", 1000, 118134621),
    (bytes(range(256)) * 4, 100000, 1549966598),
]


class ToyListener:
    """A loopback listener that serves each connection in a thread of its own: the toy
    servers of the swarm tests subclass it and write ``_serve(sock)``. ``stopping`` is set by
    ``close``, which also shuts every accepted socket and joins the threads."""

    def __init__(self, sock_timeout: float = 0.2) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self.sock_timeout = sock_timeout
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self.started = time.monotonic()
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.sock_timeout)
            self.sockets.append(sock)
            self._spawn(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def received(self, sock: socket.socket) -> Iterator[bytes]:
        """What the peer sends, chunk by chunk, until it closes, an error or ``close``."""
        while not self.stopping.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            yield data

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(3.0)
