"""`gevent`: one greenlet per client over monkey-patched sockets.

The threaded model's straight-line handler, unchanged, on greenlets: gevent's
``StreamServer`` accepts and spawns a greenlet per connection, whose blocking-looking
``recv``/``sendall`` and ``time.sleep`` (SLEEP) switch to gevent's hub (a libev loop) instead
of blocking the process. Greenlets are cheap and switch only at I/O, so there is no GIL
hand-off between clients, but WORK runs without any switch: it stalls everyone, as on an
event loop.

Monkey-patching happens in ``serve``, not at import: importing every model (``--list``, the
test suite) must not patch the importing process. By then the launcher has imported
``socket`` and ``signal``; that is fine, because ``patch_all`` replaces the modules'
attributes in place and the shared handler looks them up at call time (``time.sleep``, the
socket's own methods). ``threading`` is left unpatched: no thread is used, the handler's
lock is never held across a switch, and a patched ``threading`` makes the interpreter's exit
switch to the hub, which would run every greenlet whose (uninterruptible) WORK is ready.

Two things predate the patch. The listener is a stdlib socket: ``StreamServer`` accepts from
it, non-blocking, when the hub reports it readable. The launcher's SIGTERM/SIGINT handlers
would raise ``Shutdown`` in whichever greenlet the signal interrupts (where gevent would
report and swallow it), so ``serve`` installs its own, which throws ``Shutdown`` into the
main greenlet. That works even in the middle of a WORK, which a handler run by the hub
(``gevent.signal_handler``) could not interrupt; the main greenlet then closes the listener
and shuts every client socket down without switching to the hub again.
"""

from __future__ import annotations

import argparse
import signal
import socket

from servers._base import Shutdown, missing_library
from servers.threaded import ClientSockets, handle

DESCRIPTION = "one greenlet per client over monkey-patched sockets (gevent StreamServer)"


def unavailable() -> str | None:
    return missing_library("gevent")


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all(thread=False)
    import gevent.event
    import gevent.server
    import greenlet

    live = ClientSockets()

    def serve_client(sock: socket.socket, address: object) -> None:
        live.add(sock)
        handle(sock, live)

    main = greenlet.getcurrent()

    def stop(signum: int, frame: object) -> None:
        """Stop the main greenlet, from whichever greenlet the signal interrupted."""
        shutdown = Shutdown(signal.Signals(signum).name)
        if greenlet.getcurrent() is main:
            raise shutdown
        main.throw(shutdown)  # switches to it now; the interrupted greenlet is never resumed

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    listener.setblocking(False)  # the hub waits for readability; accept must never block it
    server = gevent.server.StreamServer(listener, serve_client)
    server.start()
    try:
        gevent.event.Event().wait()  # until stop() throws Shutdown in here
    finally:
        # No switch to the hub from here on (serve_forever's cleanup would switch): it would
        # run the greenlets that are ready, WORK and all. The exit drops them.
        server.close()
        live.shutdown_all()
