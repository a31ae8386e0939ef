"""Closed loop: every connection keeps ``pipeline`` requests in flight, sending the next one as
soon as a reply comes (the server's speed sets the rate).

The hot loop serves the fast path (core.py's docstring) inline: one ``poll``, one ``os.read``,
one ``bytes ==`` against the expected reply, one ``os.write`` of the prebuilt frame per
reply; everything else goes to the core's ``_event`` and ``_unusual_read``.
"""

from __future__ import annotations

import os
import time

from clients.worker.conn import Conn, socket_error
from clients.worker.core import IN, Worker


class ClosedLoop(Worker):
    """Send again as soon as answered."""

    def _start(self, c: Conn, now: int) -> None:
        if self.sending:
            self._send_requests(c, self.plan.pipeline, now)

    def _refill(self, c: Conn, done: int, now: int) -> None:
        if self.sending:
            self._send_requests(c, done, now)

    def _loop(self) -> None:
        poll = self.ep.poll
        clock = time.monotonic_ns
        read = os.read
        write = os.write
        fast = self.fast
        chunk = self.fast_chunk
        samples = self.m.samples
        kind = self.plan.kinds[0]
        check, frame = kind.check, kind.frame
        size = len(frame)
        unusual = self._unusual_read
        event = self._event
        readable = IN
        next_check = 0
        now = clock()
        while True:
            if now >= next_check:
                next_check = self._housekeeping(now)
                if self.finished:
                    return
                lat_append = samples.lat.append  # housekeeping may have started a new series
            sending = self.sending
            timeout = (next_check - now) / 1e9
            events = poll(timeout if timeout > 0 else 0)
            now = clock()
            # the fast path's read, written out again in open_loop.py on purpose: a function
            # shared by the two loops would cost a call per reply
            for fd, mask in events:
                c = fast[fd]
                if c is None or mask != readable:  # anything but EPOLLIN alone
                    event(fd, mask, now)
                    continue
                try:
                    data = read(fd, chunk)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:
                    self._lose(c, socket_error(error))
                    continue
                if data != check:  # not exactly one correct reply
                    unusual(c, data, now)
                    continue
                lat_append(now - c.times.popleft())
                c.count += 1
                if sending:
                    c.times.append(now)
                    try:
                        sent = write(fd, frame)
                    except OSError as error:
                        self._send_failed(c, frame, error)
                        continue
                    if sent != size:
                        self._hold(c, frame, sent)
