"""asyncio's accept out of descriptors, on interpreters whose loop spins there.

CPython's ``BaseSelectorEventLoop._accept_connection`` meets the rule of docs/protocol.md
("Out of resources") by itself: on EMFILE, ENFILE, ENOBUFS or ENOMEM it reports the error,
stops watching the listening socket and watches it again ``ACCEPT_RETRY_DELAY`` (1 s) later.
Before the fix (CPython gh-151615, merged into the main branch in June 2026, after 3.15
had branched) it did not return after that: it went on calling ``accept`` up to ``backlog``
times, reporting and scheduling a retry each time, so one wake-up with the server's backlog
of 8,192 logged 8,192 tracebacks and scheduled 8,192 retries, each of which watched the
listener again: a spin that never ends.
``new_event_loop`` gives those interpreters a loop whose only change is that ``return``;
where the fix exists it is the standard loop. This is the one place that knows which: the
first feature release with the fix; a bugfix release of an older line that took a backport
keeps the workaround, which is then the same code as its own.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import constants, trsock
from typing import Any

from servers._base import ACCEPT_RESOURCE_ERRORS

ACCEPT_LOOP_FIXED = (3, 16)  # the first CPython whose accept loop returns after backing off


class _AcceptReturnsOnResourceError(asyncio.SelectorEventLoop):
    """The selector loop with upstream's fixed ``_accept_connection``.

    ``args`` are what the loop passes after the socket (sslcontext, server, backlog, the
    handshake and shutdown timeouts, and on later versions a context), handed on unchanged.
    """

    def _accept_connection(self, protocol_factory: Any, sock: Any,  # type: ignore[override]
                           *args: Any) -> None:
        sslcontext, server, backlog, *rest = args
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # that connection is gone; the next may be there
            except OSError as error:
                if error.errno not in ACCEPT_RESOURCE_ERRORS:
                    raise  # the loop reports it
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": error,
                    "socket": trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
                self.call_later(constants.ACCEPT_RETRY_DELAY, self._start_serving,  # type: ignore[attr-defined]
                                protocol_factory, sock, *args)
                return  # what upstream's fix adds: one report and one retry per wake-up
            else:
                self.create_task(self._accept_connection2(  # type: ignore[attr-defined]
                    protocol_factory, conn, {"peername": addr}, sslcontext, server, *rest))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new asyncio event loop that backs off once per wake-up when accept lacks resources."""
    if sys.version_info >= ACCEPT_LOOP_FIXED:
        return asyncio.new_event_loop()
    return _AcceptReturnsOnResourceError()
