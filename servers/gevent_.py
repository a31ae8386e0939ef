"""`gevent`: one greenlet per client over monkey-patched sockets.

The threaded model's straight-line handler, unchanged, on greenlets: gevent's
``StreamServer`` accepts and spawns a greenlet per connection, whose blocking-looking
``recv``/``sendall`` and ``time.sleep`` (SLEEP) switch to gevent's hub (a libev loop) instead
of blocking the process. Greenlets are cheap and switch only at I/O, so there is no GIL
hand-off between clients, but WORK runs without any switch: it stalls everyone, as on an
event loop.

Monkey-patching happens in ``serve``, not at import: importing every model (``--list``, the
test suite) must not patch the importing process. By then the launcher has imported
``socket``, ``signal`` and ``threading``; that is fine, because ``patch_all`` replaces those
modules' attributes in place and the shared handler looks them up at call time
(``time.sleep``, the socket's own methods). Two objects predate the patch and are handled
here: the listener, a stdlib socket, which ``StreamServer`` accepts from non-blocking when
the hub reports it readable; and the launcher's SIGTERM/SIGINT handlers, whose exception
would be raised inside the hub and swallowed there, so gevent's own signal handling stops
the server instead.
"""

from __future__ import annotations

import argparse
import signal
import socket

from servers.threaded import ClientSockets, handle

DESCRIPTION = "one greenlet per client over monkey-patched sockets (gevent StreamServer)"
STOP_TIMEOUT = 0.5  # seconds handlers get to finish after their sockets are shut down


def unavailable() -> str | None:
    try:
        import gevent  # noqa: F401
    except ImportError as error:
        return f"gevent does not import ({error}); pip install gevent"
    return None


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.event
    import gevent.pool
    import gevent.server

    live = ClientSockets()

    def serve_client(sock: socket.socket, address: object) -> None:
        live.add(sock)
        handle(sock, live)

    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    listener.setblocking(False)  # the hub waits for readability; accept must never block it
    greenlets = gevent.pool.Pool()  # unbounded (size None); lets stop() kill what is left
    server = gevent.server.StreamServer(listener, serve_client, spawn=greenlets)
    server.start()
    try:
        stop.wait()
    finally:
        live.shutdown_all()  # unblocks every greenlet in recv/sendall; SLEEPers are killed
        server.stop(timeout=STOP_TIMEOUT)
