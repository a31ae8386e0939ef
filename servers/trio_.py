"""`trio`: structured concurrency, one task per connection (``trio.serve_listeners``).

The way trio's tutorial writes a TCP server: ``trio.serve_tcp(handler, port)``, whose handler
task reads with ``receive_some`` and writes with ``send_all`` in a straight line. ``serve_tcp``
is ``open_tcp_listeners`` plus ``serve_listeners``; the launcher has already bound and
announced the socket, so this model wraps it in a ``trio.SocketListener`` and calls
``serve_listeners`` itself. trio sets TCP_NODELAY on every ``SocketStream``. SLEEP is
``trio.sleep_until`` on trio's clock. ``send_all`` returns only once the kernel has taken
everything, and the task reads nothing meanwhile, so unsent output never passes what one
turn of the session produces (``OUTPUT_LIMIT``, rule 7).

Stopping: trio takes over SIGINT (as ``KeyboardInterrupt``) only where the handler is
Python's default, so ``run`` puts that back, and once trio runs, ``take_over_signals`` sends
SIGTERM and SIGINT through trio's handler. trio raises it at once inside a task's own code (a
long WORK) and defers it to a checkpoint inside its run loop, so the exit is prompt and never
corrupts the loop; ``run`` turns the ``KeyboardInterrupt`` (alone or in an exception group)
back into ``Shutdown``. The handler also sets ``stopping``: tasks already runnable in the same
batch would otherwise each run their WORK before reaching the checkpoint where cancellation
lands, so they answer nothing more. Waiting for the signal in a task
(``trio.open_signal_receiver``) would let every WORK runnable before it finish first.
"""

from __future__ import annotations

import argparse
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

from protocol import ServerSession
from servers._base import RECV_SIZE, Shutdown, not_importable

try:  # optional: without it the model is listed as unavailable, and anyio_ still imports this
    import trio
except ImportError as _missing:
    trio = None  # type: ignore[assignment]
    _WHY_MISSING: str | None = str(_missing)
else:
    _WHY_MISSING = None

DESCRIPTION = "trio: one task per connection (serve_listeners, receive_some/send_all)"
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
stopping = False  # set by the stop signal: answer nothing more (see the module docstring)


def unavailable() -> str | None:
    return not_importable("trio", _WHY_MISSING)


async def handle(stream: trio.SocketStream) -> None:
    """Serve one connection: read, answer, ``send_all``, sleep through SLEEPs in order.

    Each turn answers, sends and sleeps everything through, so ``wants_input`` is
    ``may_read`` here; once it ends (end of stream, BYE, a fatal error) the session is
    finished, and ``serve_listeners`` closes the stream. servers/asyncio_.py's handle_stream has
    the same turns in asyncio's calls: the turns are the session's contract
    (protocol/session.py), the calls are what differs by model.
    """
    session = ServerSession()
    try:
        while session.wants_input:
            data = await stream.receive_some(RECV_SIZE)
            if stopping:
                return
            if not data:
                session.eof_received()  # wants_input is now false: the loop ends
                continue
            deadline = session.receive(data, trio.current_time())
            while session.output or deadline is not None:
                if session.output:
                    # hand the bytearray over, detached: no copy, and the session's next
                    # answers go to a fresh one
                    output, session.output = session.output, bytearray()
                    await stream.send_all(output)
                if deadline is not None:
                    await trio.sleep_until(deadline)
                if stopping:
                    return
                deadline = session.advance(trio.current_time())
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # reset: close quietly (rule 5); an escaping error would end the whole server


async def serve_socket(listener: socket.socket) -> None:
    """``serve_listeners`` over the launcher's listening socket (trio takes it over)."""
    take_over_signals()
    await trio.serve_listeners(handle, [trio.SocketListener(trio.socket.from_stdlib_socket(
        listener))])


def take_over_signals() -> None:
    """Once trio runs: SIGTERM and SIGINT set ``stopping`` and go to trio's SIGINT handler,
    which knows where raising ``KeyboardInterrupt`` is safe."""
    trio_handler = signal.getsignal(signal.SIGINT)
    if not callable(trio_handler) or trio_handler is signal.default_int_handler:
        raise RuntimeError("trio did not install its SIGINT handler")

    def stop(signum: int, frame: FrameType | None) -> None:
        global stopping
        stopping = True
        trio_handler(signal.SIGINT, frame)  # it accepts only SIGINT

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by ``run``


def _only_interrupts(error: BaseException) -> bool:
    """True for a ``KeyboardInterrupt`` or a group holding nothing else."""
    if isinstance(error, BaseExceptionGroup):
        return all(_only_interrupts(inner) for inner in error.exceptions)
    return isinstance(error, KeyboardInterrupt)


def run(main: Callable[[], Awaitable[object]],
        runner: Callable[[Callable[[], Awaitable[object]]], object]) -> None:
    """Run ``main`` on trio with ``runner`` (``trio.run``, or anyio's on its trio backend)
    until SIGTERM or SIGINT, then raise ``Shutdown``."""
    # held back until take_over_signals: the launcher's handler raising inside trio's run
    # loop would be an internal error
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # trio takes this one over
    try:
        runner(main)
    except BaseException as error:
        if _only_interrupts(error):
            raise Shutdown("signal") from None
        raise
    raise Shutdown("serving ended")


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    assert trio is not None  # unavailable() said so
    run(lambda: serve_socket(listener), trio.run)
