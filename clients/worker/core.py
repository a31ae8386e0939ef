"""The swarm worker's core: connections, the slow path, time and phases, measurement, the result.

A worker process drives its share of the connections straight from ``select.epoll``. What
varies with the load's shape is a subclass in a module of its own (closed_loop.py,
open_loop.py, churn.py: ``_loop``, ``_start``, ``_refill``) or, for connections held beside
the load, a ``conn.Held`` it is handed (idle.py, slowloris.py); ``clients.worker.make_worker``
picks them. Time (warm-up, window, drain, the housekeeping pass) is its base, phases.py;
connections, the slow path and the partial record are here, once.

The hot loops (closed_loop.py, open_loop.py) are written for speed (the client must outrun
the fastest server): non-blocking sockets with TCP_NODELAY, prebuilt request frames, one clock
read per wake-up (open loop: and one per batch of sends), no garbage-collector passes,
latencies appended to ``array('L')`` series that ``clients._measure`` folds into
HdrHistograms after the window, so that no interval boundary stalls a send.
The fast path reads with ``os.read`` (a fast-call builtin: cheaper than ``recv_into``'s keyword
parsing) and checks a reply with one ``bytes ==`` against the exact expected reply; it sends with
``os.write``. Anything unusual (a partial or pipelined read, an error reply, a blocked write, a
hang-up, a mixed workload, large replies) leaves the fast path for ``Worker._received`` (which
splits replies with the protocol's own framing, ``clients.wire``'s ``reply_end`` and
``classify``, straight from one preallocated ``recv_into`` buffer) and ``Worker._event``, which
handle every case. The protocol (``WorkerPlan.protocol``: concbench's frames or RESP) lives in
its wire object: the hot loops only ever see prebuilt frames and expected reply bytes. Churn,
slowloris and a mix of several kinds live off the fast path, so the closed and open loops keep
their speed.

Busy connections the fast path can serve are watched edge-triggered (``EPOLLET``): a
level-triggered descriptor is polled twice per reply (when epoll reports it, and again at the
next wait to find it no longer readable), an edge-triggered one once. That needs every read to
empty the socket, which holds whenever the fast path's read size covers every reply that can be
in flight (``Worker.edge``): then neither the fast read nor ``_event``'s larger one leaves a
reply behind, and a reply that arrives later is a new edge. They are watched for EPOLLRDHUP
too: a close that came with the last bytes is in the mask then, and ``_read_slow`` reads on to
the end of the stream, which no later edge would report.

Time is ``time.monotonic_ns`` (CLOCK_MONOTONIC, the same clock in every process), so the parent
can hand all workers one timeline.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import select
import socket
from collections.abc import Callable, Sequence
from typing import Any

from clients._measure import Measurements, Progress
from clients.mix import kind_sequence
from clients.plan import Timeline, WorkerPlan
from clients.wire import wire_for
from clients.worker.conn import Conn, Held, connect_error, socket_error
from clients.worker.phases import Control, Phases

RECV_SIZE = 256 * 1024
FAST_READ_MAX = 64 * 1024  # above this, os.read's per-call allocation costs more than it saves
SLOW_READS = 64  # edge-triggered: full RECV_SIZE reads in a row before waiting for the next edge
CONNECT_BATCH = 16  # connects started per housekeeping pass (the rest at the next ones)
IN = select.EPOLLIN
OUT = select.EPOLLOUT
CLOSED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR  # the peer is gone or going


class Worker(Phases):
    """Connect, drive the load, measure; ``run`` returns the worker's partial record.

    A load shape is a subclass: ``_loop`` drives the load until ``finished``, ``_start`` puts
    a freshly established busy connection to work and ``_refill`` follows ``done`` answered
    requests on one. ``held`` makes the kinds of connections held beside the load (each a
    ``Held`` of this worker); ``drained`` is called once the load is over, before the
    figures are folded."""

    open = False  # latency from each request's scheduled send (open_loop.py), not its send
    reads_fast = True  # the fast path may serve this shape's connections (not churn.py's)

    def __init__(self, plan: WorkerPlan, timeline: Timeline,
                 progress: Progress | None = None, control: Control | None = None,
                 held: Sequence[Callable[[Worker], Held]] = (),
                 drained: Callable[[], None] | None = None) -> None:
        super().__init__(timeline, control)
        self.plan = plan
        self.drained = drained
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        # by file descriptor: the connections the fast path may serve (uniform workload,
        # connected, nothing partial, nothing unsent), None for every other descriptor
        self.fast: list[Conn | None] = []
        self.all_conns: list[Conn] = []
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.m = Measurements(self.open, timeline.window_ns, plan.interval_ns, progress,
                              kinds=len(plan.kinds))
        self.uniform = len(plan.kinds) == 1
        self.wire = wire_for(plan.protocol)
        # the fast path reads at most this (0: no fast path): all the replies that can be in
        # flight, when there is one kind, its whole reply is known and the read stays small
        kind = plan.kinds[0]
        self.fast_chunk = min(kind.reply_length * plan.pipeline, FAST_READ_MAX) if (
            self.uniform and kind.full_check and kind.reply_length <= FAST_READ_MAX
            and self.reads_fast) else 0
        # busy connections are watched edge-triggered when one read always takes every reply
        # in flight (module docstring)
        self.edge = bool(self.fast_chunk) and self.fast_chunk == kind.reply_length * plan.pipeline
        self.busy_events = IN | select.EPOLLRDHUP | select.EPOLLET if self.edge else IN
        self.established = 0
        self.live = 0
        self.held = [make(self) for make in held]
        # those with chores of their own (slowloris' drips), looked at in every housekeeping pass
        self.timed = [h for h in self.held if h.count and type(h).tick is not Held.tick]
        # who the connections are, in the order they open: the held ones marked ``first``
        # (slowloris: the attack is already there when the clients come), the busy ones
        # (None), then the other held ones (idle)
        order = [*(h for h in self.held if h.first), None,
                 *(h for h in self.held if not h.first)]
        self.openers: list[tuple[int, Held | None]] = []  # (end of the range, who)
        for who in order:
            end = (self.openers[-1][0] if self.openers else 0) + (
                plan.connections if who is None else who.count)
            self.openers.append((end, who))
        self.to_open = self.openers[-1][0]
        self.next_connect = timeline.start_ns
        self.connect_spacing = int(1e9 / plan.connect_rate) if plan.connect_rate > 0 else 0

    # ----------------------------------------------------------------- what a shape is

    def _loop(self) -> None:
        """Drive the load until ``finished`` (calling ``_housekeeping`` when it is due)."""
        raise NotImplementedError

    def _start(self, c: Conn, now: int) -> None:
        """A busy connection is established: put it to work."""
        raise NotImplementedError

    def _refill(self, c: Conn, done: int, now: int) -> None:
        """``done`` requests on ``c`` (still open) were answered."""
        raise NotImplementedError

    def run(self) -> dict[str, Any]:
        """Drive the load until the timeline ends, every connection is gone or a stop."""
        gc.collect()
        gc.freeze()  # the hot loop makes no reference cycles: no collector passes during it
        gc.disable()
        try:
            self._loop()
        finally:
            gc.enable()
            gc.unfreeze()
            self._close_all()
        if self.drained is not None:
            self.drained()
        return self._result()

    # ----------------------------------------------------------------- the slow paths

    def _unusual_read(self, c: Conn, data: bytes, now: int) -> None:
        """The fast path read something other than exactly one correct reply."""
        n = len(data)
        self.buf[:n] = data
        self._received(c, n, now)
        if self.edge and n == self.fast_chunk and c.partial and not c.dead:
            # the read took all it may and still ended inside a reply (a longer one than
            # expected, an error say): the rest may already be here, and no edge would say so
            self._read_slow(c, now)

    def _received(self, c: Conn, n: int, now: int) -> None:
        """Every read the fast path does not take: EOF, partial, pipelined, error or mixed."""
        if n == 0:
            self._lose(c, "eof")
            return
        if c.partial:
            c.partial += self.view[:n]
            data = c.partial
        else:
            data = self.buf
        avail = len(data) if data is c.partial else n
        kinds = self.plan.kinds
        wire = self.wire
        shortest = wire.min_reply
        pos = 0
        done = 0
        while avail - pos >= shortest:
            if c.times:
                kind = kinds[0] if self.uniform else kinds[c.kinds[0]]
                if avail - pos >= kind.reply_length and data.startswith(kind.check, pos):
                    pos += kind.reply_length
                    self._complete(c, now)
                    done += 1
                    continue
            else:
                kind = None
            try:
                end = wire.reply_end(data, pos, avail)
            except ValueError:  # the stream cannot be framed any more
                self._lose(c, "protocol")
                return
            if end is None:
                break
            outcome, error_reply, closes = wire.classify(data, pos, end)
            pos = end
            if kind is None:  # a reply nobody asked for: ERROR 4 at accept, or a broken server
                self._lose(c, outcome if error_reply else "unexpected")
                return
            self._complete_error(c, outcome)
            done += 1
            if closes:
                self._lose(c, None)  # the server closes this connection after these
                return
        if data is c.partial:
            del data[:pos]
        elif pos < avail:
            c.partial = bytearray(self.view[pos:avail])
        self._update_fast(c)
        if done and not c.dead:
            self._refill(c, done, now)

    def _complete(self, c: Conn, now: int) -> None:
        """A correct reply to the oldest request in flight."""
        self._answered(c, now - c.times.popleft())

    def _answered(self, c: Conn, latency: int) -> None:
        """Count a correct reply and its latency (a mix's: its kind's latency too)."""
        samples = self.m.samples
        samples.lat.append(latency)
        if not self.uniform:
            samples.by_kind[c.kinds.popleft()].append(latency)
        c.count += 1

    def _complete_error(self, c: Conn, outcome: str) -> None:
        """A wrong or ERROR reply to the oldest request in flight."""
        c.times.popleft()
        if not self.uniform:
            c.kinds.popleft()
        self.m.errors.responses += 1
        self._count_error(outcome)

    def _send_requests(self, c: Conn, count: int, now: int) -> None:
        """Put ``count`` more requests in flight on ``c`` now (closed loop and churn)."""
        kinds = self.plan.kinds
        if self.uniform:
            data = kinds[0].frame * count
        else:
            chosen = []
            for _ in range(count):
                chosen.append(c.sequence[c.position])
                c.position = (c.position + 1) % len(c.sequence)
            c.kinds.extend(chosen)
            data = b"".join(kinds[index].frame for index in chosen)
        c.times.extend([now] * count)
        self._write(c, data)

    def _write(self, c: Conn, data: bytes) -> None:
        """Send ``data`` after anything already waiting; keep what the socket does not take."""
        if c.out:
            c.out += data
            return
        try:
            sent = os.write(c.fd, data)
        except OSError as error:
            self._send_failed(c, data, error)
            return
        if sent != len(data):
            self._hold(c, data, sent)

    def _send_failed(self, c: Conn, data: bytes, error: OSError) -> None:
        if isinstance(error, (BlockingIOError, InterruptedError)):
            self._hold(c, data, 0)
        else:
            self._lose(c, socket_error(error))

    def _hold(self, c: Conn, data: bytes, sent: int) -> None:
        """The socket took only ``sent`` bytes: keep the rest and wait for writability."""
        c.out += memoryview(data)[sent:]
        self.fast[c.fd] = None
        self.ep.modify(c.fd, IN | OUT)

    def _update_fast(self, c: Conn) -> None:
        """Let the fast path serve ``c`` only while nothing about it is unusual."""
        ok = (self.fast_chunk and c.connected and not c.dead and not c.partial and not c.out
              and c.held is None)
        self.fast[c.fd] = c if ok else None

    def _flush(self, c: Conn) -> None:
        try:
            sent = os.write(c.fd, c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(c, socket_error(error))
            return
        del c.out[:sent]
        if not c.out:
            self.ep.modify(c.fd, self.busy_events)
            self._update_fast(c)

    def _event(self, fd: int, mask: int, now: int) -> None:
        """Anything but plain readability on a fast-path connection."""
        c = self.conns.get(fd)
        if c is None:
            return
        if not c.connected:
            if mask & (OUT | select.EPOLLERR | select.EPOLLHUP):
                self._connect_event(c, now)
            return
        if mask & OUT and c.out:
            self._flush(c)
            if c.dead:
                return
        if c.hello and c.held is not None and mask & IN:
            c.held.reply(c, now)
        elif mask & (IN | select.EPOLLHUP | select.EPOLLERR):
            self._read_slow(c, now, bool(mask & CLOSED))

    def _read_slow(self, c: Conn, now: int, closed: bool = False) -> None:
        """Read into the preallocated buffer and take every reply in it. Edge-triggered, no new
        edge reports what one read left behind: a full buffer's rest, or the end of a
        connection the peer has closed (``closed``); read on until they are taken (bounded)."""
        buf = self.buf
        for _ in range(SLOW_READS):
            try:
                n = c.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._lose(c, socket_error(error))
                return
            self._received(c, n, now)
            if c.dead or not self.edge or (n < len(buf) and not closed):
                return

    # ----------------------------------------------------------------- connections

    def _open_due(self, now: int) -> None:
        """Start the connections whose turn has come (all at once without a connect rate)."""
        total = self.openers[-1][0]
        batch = CONNECT_BATCH
        while self.to_open and self.next_connect <= now and batch:
            batch -= 1
            index = total - self.to_open
            self.to_open -= 1
            self.next_connect += self.connect_spacing
            who = next(who for end, who in self.openers if index < end)
            self._connect(self.plan.first_connection + index, now, who)

    def _open_socket(self, held: Held | None) -> tuple[socket.socket, int] | None:
        """A non-blocking connect started: the socket and connect_ex's code; None (the error
        counted for ``held``'s kind of connection) if it failed at once."""
        plan = self.plan
        label = held.label if held is not None else None
        try:
            sock = socket.socket(plan.family, socket.SOCK_STREAM)
        except OSError as error:
            self._count_error(connect_error(error.errno), label)
            return None
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(plan.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._count_error(connect_error(code), label)
            return None
        return sock, code

    def _connect(self, number: int, now: int, held: Held | None = None) -> None:
        """Open connection ``number``: busy (``held`` None) or held beside the load."""
        opened = self._open_socket(held)
        if opened is None:
            return
        sock, code = opened
        self._watch(Conn(sock, number, self._sequence(number, held), now, held), code, now)

    def _sequence(self, number: int, held: Held | None) -> list[int]:
        """The kinds connection ``number`` cycles through: the mix by weight, or with
        dedicated connections, kind 0 alone for them and the other kinds for the rest."""
        plan = self.plan
        weights = list(plan.weights)
        if plan.dedicated and held is None:
            # the busy connections open after the held ones marked ``first`` (``openers``)
            opened_before = sum(h.count for h in self.held if h.first)
            if number - plan.first_connection - opened_before < plan.dedicated:
                return [0]
            weights[0] = 0.0
        return kind_sequence(weights, plan.seed * 1_000_003 + number)

    def _watch(self, c: Conn, code: int, now: int) -> None:
        """Register a connection whose connect has started (``code``: connect_ex's)."""
        self.conns[c.fd] = c
        if c.fd >= len(self.fast):
            self.fast.extend([None] * (c.fd + 1 - len(self.fast)))
        self.live += 1
        self.ep.register(c.fd, OUT)
        if code == 0:
            self._established(c, now)

    def _connect_event(self, c: Conn, now: int) -> None:
        code = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lose(c, connect_error(code))
        else:
            self._established(c, now)

    def _established(self, c: Conn, now: int) -> None:
        c.connected = True
        self._update_fast(c)
        if not c.cycles:  # churn's later connections are timed in the window (churn.py)
            self.m.connect_ns.append(now - c.started_ns)
        if c.held is not None:  # read (an ERROR 4 or a close ends it), written by its kind
            self.ep.modify(c.fd, IN)
            c.held.opened(c, now)
            return
        if not c.cycles:
            self.established += 1
            self.all_conns.append(c)
        c.cycles += 1
        self.ep.modify(c.fd, self.busy_events)
        self._start(c, now)

    def _lose(self, c: Conn, reason: str | None) -> None:
        """Close ``c`` (counting ``reason`` as an error, if given); its requests are lost."""
        if c.dead:
            return
        if reason is not None:
            self._count_error(reason, c.held.label if c.held is not None else None)
        self.m.errors.lost += len(c.times)
        self._drop(c)
        self._retire(c)

    def _drop(self, c: Conn) -> None:
        """Close ``c``'s socket and forget its descriptor."""
        del self.conns[c.fd]
        self.fast[c.fd] = None
        self.live -= 1
        with contextlib.suppress(OSError):
            self.ep.unregister(c.fd)
        c.sock.close()

    def _retire(self, c: Conn) -> None:
        """``c`` is gone for good: its count stops here."""
        c.dead = True
        if self.phase != "warmup" and c.final is None:
            c.final = c.count

    def _close_all(self) -> None:
        for c in list(self.conns.values()):
            self.m.errors.lost += len(c.times)
            c.dead = True
            c.sock.close()
        self.conns.clear()
        self.live = 0
        self.ep.close()

    def _count_error(self, kind: str, held: str | None = None) -> None:
        self.m.errors.add(kind, held)

    # ----------------------------------------------------------------- the result

    def _result(self) -> dict[str, Any]:
        """The worker's partial record, for the parent to merge (``clients.record``)."""
        m = self.m
        errors = m.errors
        window_start = self.timeline.window_ns if m.window_end is not None else None
        per_connection = [(c.final if c.final is not None else c.count) - c.base
                          for c in self.all_conns] if window_start is not None else []
        ok_total = sum(c.count for c in self.all_conns)
        return {
            "index": self.plan.index,
            "connections": self.plan.connections,
            "established": self.established,
            "ok_total": ok_total,
            "error_responses": errors.responses,
            "lost": errors.lost,
            "sent_total": ok_total + errors.responses + errors.lost,
            "requests": sum(per_connection),
            "per_connection": per_connection,
            **m.figures(),
            "errors": errors.by_kind,
            "cpu": m.cpu.figures,
            "window_start_ns": window_start,
            "window_end_ns": m.window_end,
            "stopped": self.stopped,
            **{held.key: held.figures(errors.held(held.label)) for held in self.held},
        }
