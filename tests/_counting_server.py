"""A minimal server for the hosts tests: ECHO answered, every request counted.

``python tests/_counting_server.py --host ADDR`` prints ``READY host port`` (docs/protocol.md's
launch contract) and serves each connection in a thread with ``protocol.respond``; on SIGTERM
it prints ``COUNT n`` (the requests it answered) to standard error and exits 0. The test
compares n with the swarm's merged count: the server's own, independent tally.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from protocol import FrameDecoder, respond

COUNT = [0]
LOCK = threading.Lock()


def serve(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    decoder = FrameDecoder()
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            decoder.feed(data)
            replies, answered = [], 0
            while (frame := decoder.next_frame()) is not None:
                replies.append(respond(frame.code, frame.value, frame.payload).data)
                answered += 1
            if answered:
                with LOCK:
                    COUNT[0] += answered
                try:
                    conn.sendall(b"".join(replies))
                except OSError:
                    return


def stop(signum: int, frame: object) -> None:
    with LOCK:
        print(f"COUNT {COUNT[0]}", file=sys.stderr, flush=True)
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, stop)
    listener = socket.create_server((options.host, 0), backlog=128)
    print(f"READY {options.host} {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
