"""One swarm worker process: its share of the connections, driven straight from ``select.epoll``.

The hot loops are written for speed (the client must outrun the fastest server): non-blocking
sockets with TCP_NODELAY, prebuilt request frames, one clock read per wake-up (open loop: and
one per batch of sends), no garbage-collector passes, latencies appended to ``array('L')``
series that ``clients._measure`` folds into HdrHistograms after the window, so that no interval
boundary stalls a send. Open loop sends on ``clients._schedule``'s times, waking up early by
what a wake-up costs and spinning through the rest.
The fast path reads with ``os.read`` (a fast-call builtin: cheaper than ``recv_into``'s keyword
parsing) and checks a reply with one ``bytes ==`` against the exact expected reply; it sends with
``os.write``. Anything unusual (a partial or pipelined read, an error reply, a blocked write, a
hang-up, a mixed workload, large replies) leaves the fast path for ``Worker._received`` (which
splits replies with the protocol's own framing, ``clients.wire``'s ``reply_end`` and
``classify``, straight from one preallocated ``recv_into`` buffer) and ``Worker._event``, which
handle every case. The protocol (``WorkerPlan.protocol``: concbench's frames or RESP) lives in
its wire object: the hot loops only ever see prebuilt frames and expected reply bytes.

Two workloads live off the fast path, so the closed and open loops keep their speed:
churn (``requests_per_connection``: a connection makes that many requests, is closed, and a
fresh one takes its place; every reply goes through ``_received``) and slowloris (``slow``
extra connections, opened first, that send part of a frame and then one byte every
``slow_interval_ns``, from the housekeeping pass, never finishing it). A mix of several kinds
also goes through ``_received``, which keeps each kind's latency apart.

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
import dataclasses
import errno
import gc
import heapq
import os
import select
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from clients._measure import Measurements, Progress
from clients._schedule import (
    LEAD_DOWN_NS,
    LEAD_MAX_NS,
    LEAD_START_NS,
    LEAD_UP_NS,
    MIN_SLEEP_NS,
    NEVER,
    TIMER_SLACK_NS,
    Schedule,
    set_timer_slack,
)
from clients.mix import kind_sequence
from clients.wire import DEFAULT_PROTOCOL, ReplyKind, wire_for
from protocol.launch import raise_fd_limit

RECV_SIZE = 256 * 1024
FAST_READ_MAX = 64 * 1024  # above this, os.read's per-call allocation costs more than it saves
SLOW_READS = 64  # edge-triggered: full RECV_SIZE reads in a row before waiting for the next edge
CHORE_NS = 5_000_000  # timeouts, stop requests, the end of the drain: a look every 5 ms...
CHORE_BATCH = 256  # ...at this many connections' timeouts (the rest at the next looks)
CONNECT_BATCH = 16  # connects started per housekeeping pass (the rest at the next ones)
DRIP_BATCH = 64  # slowloris bytes sent per housekeeping pass (the rest at the next ones)
DRIP_SPREAD = 1000  # the first drips are spread over one interval in this many steps
IN = select.EPOLLIN
OUT = select.EPOLLOUT
CLOSED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR  # the peer is gone or going
# steady-state warm-up (``Control``): a worker reports its replies and answered connections
# every slice, and looks for the parent's decision to open the window at every chore (5 ms:
# the parent announces the window WINDOW_LEAD_S ahead, clients/_steady.py)
WARM_SLICE_NS = 50_000_000


@dataclass(frozen=True)
class Timeline:
    """When things happen, in ``time.monotonic_ns``: the same for every worker of a run."""

    start_ns: int  # begin connecting
    load_ns: int  # the open-loop schedule starts (start + connection ramp)
    window_ns: int  # the measured window starts (load + warm-up)
    end_ns: int  # the measured window ends; no new requests after it
    drain_ns: int  # stop waiting for replies still in flight


@dataclass(frozen=True)
class WorkerPlan:
    """Everything one worker needs besides its timeline."""

    index: int
    family: int
    address: tuple[Any, ...]
    connections: int
    first_connection: int  # global number of this worker's first connection (for seeds)
    mode: str  # "closed" or "open"
    pipeline: int  # requests in flight per connection (open loop: the cap)
    rate: float  # open loop: this worker's share of requests per second
    arrivals: str  # "constant" or "poisson"
    kinds: tuple[ReplyKind, ...]
    weights: tuple[float, ...]
    connect_rate: float  # this worker's connections per second; 0: all at once
    timeout_ns: int
    interval_ns: int
    seed: int
    idle: int = 0  # connections opened after the busy ones and held without sending
    dedicated: int = 0  # the first busy connections send kind 0 only; the others never do
    # churn: requests per connection before it is closed and a fresh one opened (0: never)
    requests_per_connection: int = 0
    slow: int = 0  # slowloris: connections opened first, sending part of ``slow_frame``...
    slow_first: int = 0  # ...this many bytes of it at once...
    slow_interval_ns: int = 0  # ...then one more byte every this long, never the last one
    slow_frame: bytes = b""
    # an idle connection's one request when it opens, and the reply it must get: the server
    # has accepted and registered it (not left it in the listen queue); then it stays silent
    idle_frame: bytes = b""
    idle_reply: bytes = b""
    protocol: str = DEFAULT_PROTOCOL  # the wire (``clients.wire``): framing of the slow path
    steady: bool = False  # the parent opens the window once the load is steady (``Control``)


class Conn:
    """One client connection and what it has in flight."""

    __slots__ = ("sock", "fd", "number", "recv_into", "times", "scheds", "kinds", "partial",
                 "out", "count", "base", "final", "connected", "started_ns", "dead",
                 "sequence", "position", "idle", "slow", "left", "cycles", "drip", "hello")

    def __init__(self, sock: socket.socket, number: int, sequence: list[int], now: int,
                 idle: bool = False) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.number = number
        self.recv_into = sock.recv_into
        self.times: deque[int] = deque()  # when each request in flight was sent
        self.scheds: deque[int] = deque()  # open loop: when each was scheduled
        self.kinds: deque[int] = deque()  # mixed workloads: the kind of each
        self.partial = bytearray()  # the start of a reply not yet complete
        self.out = bytearray()  # request bytes the socket did not take yet
        self.count = 0  # correct replies, all phases
        self.base = 0  # ``count`` when the measured window started
        self.final: int | None = None  # ``count`` when it ended
        self.connected = False
        self.started_ns = now
        self.dead = False
        self.sequence = sequence
        self.position = 0
        self.idle = idle  # held open, never sends: no latency, no throughput, errors only
        self.slow = False  # slowloris (also idle): sends a frame a byte at a time
        self.left: int | None = None  # churn: requests this connection has still to send
        self.cycles = 0  # connections made in this place (churn: one after another)
        self.drip = 0  # slowloris: bytes of the frame sent so far
        self.hello = False  # idle: its one request is waiting for its reply

    def attach(self, sock: socket.socket, now: int) -> None:
        """Churn: the next connection in this one's place (its counts carry on)."""
        self.sock = sock
        self.fd = sock.fileno()
        self.recv_into = sock.recv_into
        self.partial = bytearray()
        self.out = bytearray()
        self.connected = False
        self.started_ns = now
        self.dead = False


class Stop:
    """Set by SIGINT/SIGTERM: finish now with what has been measured."""

    requested = False


def _request_stop(signum: int, frame: object) -> None:
    Stop.requested = True


class Control(Protocol):
    """The parent's hand on a worker's warm-up: without one the timeline is fixed.

    ``report`` sends one warm-up slice (its index, the replies in it, the busy connections
    answered at least once so far and those established); ``window`` returns the parent's
    decision, (window, end, drain) in ``time.monotonic_ns``, once it has been made."""

    def report(self, index: int, replies: int, answered: int, established: int) -> None: ...

    def window(self) -> tuple[int, int, int] | None: ...


class Worker:
    """Connect, drive the load, measure; ``run`` returns the worker's partial record."""

    def __init__(self, plan: WorkerPlan, timeline: Timeline,
                 progress: Progress | None = None, control: Control | None = None) -> None:
        self.plan = plan
        self.timeline = timeline
        self.control = control
        self.next_warm = timeline.load_ns + WARM_SLICE_NS if control is not None else NEVER
        self.warm_index = 0
        self.warm_replies = 0  # replies counted at the last slice's end
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        # by file descriptor: the connections the fast path may serve (uniform workload,
        # connected, nothing partial, nothing unsent), None for every other descriptor
        self.fast: list[Conn | None] = []
        self.all_conns: list[Conn] = []
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.open = plan.mode == "open"
        self.m = Measurements(self.open, timeline.window_ns, plan.interval_ns, progress,
                              kinds=len(plan.kinds))
        self.uniform = len(plan.kinds) == 1
        self.wire = wire_for(plan.protocol)
        # the fast path reads at most this (0: no fast path): all the replies that can be in
        # flight, when there is one kind, its whole reply is known and the read stays small;
        # churn closes a connection after its replies, which the fast path does not look for
        kind = plan.kinds[0]
        self.fast_chunk = min(kind.reply_length * plan.pipeline, FAST_READ_MAX) if (
            self.uniform and kind.full_check and kind.reply_length <= FAST_READ_MAX
            and not plan.requests_per_connection) else 0
        # busy connections are watched edge-triggered when one read always takes every reply
        # in flight (module docstring)
        self.edge = bool(self.fast_chunk) and self.fast_chunk == kind.reply_length * plan.pipeline
        self.busy_events = IN | select.EPOLLRDHUP | select.EPOLLET if self.edge else IN
        self.sending = True
        self.finished = False
        self.stopped: str | None = None
        self.established = 0
        self.live = 0
        # the slow ones first (the attack is already there when the clients come), then the
        # busy ones, then the idle
        self.to_open = plan.slow + plan.connections + plan.idle
        self.idle_established = 0
        self.idle_answered = 0  # idle connections whose one request was answered
        self.idle_alive: int | None = None  # idle connections still open when the window ended
        self.slow_established = 0
        self.slow_alive: int | None = None  # slow connections still open when the window ended
        self.slow_bytes = 0  # bytes the slow connections sent
        self.drips: list[tuple[int, int, Conn]] = []  # heap: (next byte due, number, conn)
        self.next_connect = timeline.start_ns
        self.connect_spacing = int(1e9 / plan.connect_rate) if plan.connect_rate > 0 else 0
        self.next_chore = timeline.start_ns
        self.watch: list[Conn] = []  # the connections the timeout looks go through...
        self.watch_at = 0  # ...and the next one to look at
        self.phase = "warmup"  # then "window", "drain"
        self.parent = os.getppid()
        # open loop: one entry per free in-flight slot, and when the next request is due
        self.free: deque[Conn] = deque()
        self.schedule = Schedule(timeline.load_ns, timeline.end_ns,
                                 plan.rate if self.open else 0.0, plan.arrivals, plan.seed)

    # ----------------------------------------------------------------- the hot loops

    def run(self) -> dict[str, Any]:
        """Drive the load until the timeline ends, every connection is gone or a stop."""
        gc.collect()
        gc.freeze()  # the hot loop makes no reference cycles: no collector passes during it
        gc.disable()
        try:
            if self.open:
                self._loop_open()
            else:
                self._loop_closed()
        finally:
            gc.enable()
            gc.unfreeze()
            self._close_all()
        return self._result()

    def _loop_closed(self) -> None:
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
                    self._lose(c, _socket_error(error))
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

    def _loop_open(self) -> None:
        poll = self.ep.poll
        ready = [self.ep.fileno()]  # select's read list, built once
        wait = select.select
        clock = time.monotonic_ns
        read = os.read
        fast = self.fast
        chunk = self.fast_chunk
        free = self.free
        schedule = self.schedule
        m = self.m
        samples = m.samples
        free_append = free.append
        check = self.plan.kinds[0].check
        unusual = self._unusual_read
        event = self._event
        send_due = self._send_due
        readable = IN
        lead = LEAD_START_NS  # how long before a due send to wake: what waking up costs
        lead_up, lead_down, lead_max = LEAD_UP_NS, LEAD_DOWN_NS, LEAD_MAX_NS
        shortest = MIN_SLEEP_NS  # a sleep shorter than this is spun instead
        spun = 0  # time spent polling on purpose until a send fell due
        next_check = 0
        now = clock()
        while True:
            if now >= next_check:
                m.cpu.spin_ns = spun
                if lead > lead_down:  # drift down: a rate that only spins never sleeps to learn
                    lead -= lead_down
                next_check = self._housekeeping(now)
                if self.finished:
                    return
                lat_append = samples.lat.append  # housekeeping may have started new series
                lat_u_append = samples.lat_u.append
            due = schedule.next_ns if free else NEVER
            if due < next_check:
                gap = due - now
                if gap > lead + shortest:  # sleep (select: µs) until waking would end at due
                    if not wait(ready, (), (), (gap - lead) / 1e9)[0]:
                        # slept it out: learn the wake-up cost (it settles where 1 wake-up in
                        # LEAD_UP/LEAD_DOWN + 1 is late)
                        if clock() > due:
                            lead = lead + lead_up if lead < lead_max else lead_max
                        elif lead > lead_down:
                            lead -= lead_down
                    events = poll(0)
                    now = clock()
                else:  # the wait is shorter than a wake-up and a sleep worth its cost: spin
                    # until the send is due (or a reply comes)
                    then = clock()
                    while True:
                        events = poll(0)
                        now = clock()
                        if events or now >= due:
                            break
                    spun += now - then
            else:  # select here too: epoll_wait rounds up to whole ms, which a send due just
                # after the housekeeping pass would wait out
                if next_check > now:
                    wait(ready, (), (), (next_check - now) / 1e9)
                events = poll(0)
                now = clock()
            if not free and schedule.next_ns <= now:  # fell due while every connection was busy:
                schedule.waiting_until = now  # their wait is the server's, not the client's
            for fd, mask in events:
                c = fast[fd]
                if c is None or mask != readable:
                    event(fd, mask, now)
                    continue
                try:
                    data = read(fd, chunk)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:
                    self._lose(c, _socket_error(error))
                    continue
                if data != check:
                    unusual(c, data, now)
                    continue
                lat_append(now - c.scheds.popleft())
                lat_u_append(now - c.times.popleft())
                c.count += 1
                free_append(c)
            if free and schedule.next_ns <= now:
                send_due(clock())  # read again: the replies above took time, lateness is real
                now = clock()  # and the next wait counts from after these sends

    def _send_due(self, now: int) -> None:
        """Open loop: send every scheduled request that is due, while a connection is free."""
        free = self.free
        kinds = self.plan.kinds
        uniform = self.uniform
        schedule = self.schedule
        advance = schedule.advance
        waiting_until = schedule.waiting_until
        samples = self.m.samples
        lag_append = samples.lag.append
        own_append = samples.own_lag.append
        write = self._write
        sched = schedule.next_ns
        while sched <= now and free:
            c = free.popleft()
            if c.dead:
                continue
            if uniform:
                frame = kinds[0].frame
            else:
                index = c.sequence[c.position]
                c.position = (c.position + 1) % len(c.sequence)
                c.kinds.append(index)
                frame = kinds[index].frame
            c.times.append(now)
            c.scheds.append(sched)
            write(c, frame)
            lag = now - sched
            lag_append(lag)
            if sched > waiting_until:  # it had a free connection: any lateness is the client's
                own_append(lag)
            sched = advance()
        if sched <= now:  # the rest must wait for a connection to come free
            schedule.waiting_until = now

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
        if done:
            self._refill(c, done, now)

    def _complete(self, c: Conn, now: int) -> None:
        """A correct reply to the oldest request in flight (a mix's: its kind's latency too)."""
        samples = self.m.samples
        if self.open:
            latency = now - c.scheds.popleft()
            samples.lat_u.append(now - c.times.popleft())
        else:
            latency = now - c.times.popleft()
        samples.lat.append(latency)
        if not self.uniform:
            samples.by_kind[c.kinds.popleft()].append(latency)
        c.count += 1

    def _complete_error(self, c: Conn, outcome: str) -> None:
        """A wrong or ERROR reply to the oldest request in flight."""
        c.times.popleft()
        if self.open:
            c.scheds.popleft()
        if not self.uniform:
            c.kinds.popleft()
        self.m.errors.responses += 1
        self._count_error(outcome)

    def _refill(self, c: Conn, done: int, now: int) -> None:
        """``done`` requests were answered: closed loop sends as many, open loop frees slots."""
        if c.dead:
            return
        if self.open:
            self.free.extend([c] * done)
        elif c.left is not None:
            self._churn_next(c, done, now)
        elif self.sending:
            self._send_requests(c, done, now)

    def _churn_next(self, c: Conn, count: int, now: int) -> None:
        """Churn: up to ``count`` more of this connection's requests; once it has sent them
        all and every one is answered, it closes and a fresh one takes its place."""
        if self.sending and c.left:
            sent = min(count, c.left)
            c.left -= sent
            self._send_requests(c, sent, now)
        elif not c.times:
            self._recycle(c, now)

    def _recycle(self, c: Conn, now: int) -> None:
        """Churn: close ``c`` (its cycle counted in the window) and, while requests are still
        being sent, connect again in its place."""
        if self.phase == "window":
            self.m.churn_cycle_ns.append(now - c.started_ns)
        self._drop(c)
        opened = self._open_socket(None) if self.sending else None
        if opened is None:  # the window is over, or the connect failed (counted)
            self._retire(c)
            return
        sock, code = opened
        c.attach(sock, now)
        c.left = self.plan.requests_per_connection
        self._watch(c, code, now)

    def _send_requests(self, c: Conn, count: int, now: int) -> None:
        """Closed loop: put ``count`` more requests in flight on ``c``."""
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
            self._lose(c, _socket_error(error))

    def _hold(self, c: Conn, data: bytes, sent: int) -> None:
        """The socket took only ``sent`` bytes: keep the rest and wait for writability."""
        c.out += memoryview(data)[sent:]
        self.fast[c.fd] = None
        self.ep.modify(c.fd, IN | OUT)

    def _update_fast(self, c: Conn) -> None:
        """Let the fast path serve ``c`` only while nothing about it is unusual."""
        ok = (self.fast_chunk and c.connected and not c.dead and not c.partial and not c.out
              and not c.idle)
        self.fast[c.fd] = c if ok else None

    def _flush(self, c: Conn) -> None:
        try:
            sent = os.write(c.fd, c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(c, _socket_error(error))
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
        if c.hello and mask & IN:
            self._hello_reply(c, now)
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
                self._lose(c, _socket_error(error))
                return
            self._received(c, n, now)
            if c.dead or not self.edge or (n < len(buf) and not closed):
                return

    # ----------------------------------------------------------------- connections

    def _open_due(self, now: int) -> None:
        """Start the connections whose turn has come (all at once without a connect rate)."""
        plan = self.plan
        total = plan.slow + plan.connections + plan.idle
        batch = CONNECT_BATCH
        while self.to_open and self.next_connect <= now and batch:
            batch -= 1
            index = total - self.to_open
            self.to_open -= 1
            self.next_connect += self.connect_spacing
            held = "slow" if index < plan.slow else (
                None if index < plan.slow + plan.connections else "idle")
            self._connect(plan.first_connection + index, now, held)

    def _open_socket(self, held: str | None) -> tuple[socket.socket, int] | None:
        """A non-blocking connect started: the socket and connect_ex's code; None (the error
        counted for ``held``'s kind of connection) if it failed at once."""
        plan = self.plan
        try:
            sock = socket.socket(plan.family, socket.SOCK_STREAM)
        except OSError as error:
            self._count_error(_connect_error(error.errno), held)
            return None
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(plan.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._count_error(_connect_error(code), held)
            return None
        return sock, code

    def _connect(self, number: int, now: int, held: str | None = None) -> None:
        """Open connection ``number``: busy (``held`` None), ``"idle"`` or ``"slow"``."""
        plan = self.plan
        opened = self._open_socket(held)
        if opened is None:
            return
        sock, code = opened
        sequence = self._sequence(number, held)
        c = Conn(sock, number, sequence, now, held is not None)
        c.slow = held == "slow"
        if held is None and plan.requests_per_connection:
            c.left = plan.requests_per_connection
        self._watch(c, code, now)

    def _sequence(self, number: int, held: str | None) -> list[int]:
        """The kinds connection ``number`` cycles through: the mix by weight, or with
        dedicated connections, kind 0 alone for them and the other kinds for the rest."""
        plan = self.plan
        weights = list(plan.weights)
        if plan.dedicated and held is None:
            if number - plan.first_connection - plan.slow < plan.dedicated:
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
            self._lose(c, _connect_error(code))
        else:
            self._established(c, now)

    def _established(self, c: Conn, now: int) -> None:
        c.connected = True
        self._update_fast(c)
        if not c.cycles:  # churn's later connections are timed in the window, below
            self.m.connect_ns.append(now - c.started_ns)
        if c.idle:  # held and read (an ERROR 4 or a close ends it), never written to
            self.ep.modify(c.fd, IN)
            if c.slow:
                self.slow_established += 1
                self._start_drip(c, now)
            else:
                self.idle_established += 1
                self._say_hello(c)
            return
        if not c.cycles:
            self.established += 1
            self.all_conns.append(c)
        c.cycles += 1
        self.ep.modify(c.fd, self.busy_events)
        if self.open:
            self.free.extend([c] * self.plan.pipeline)
        elif c.left is not None:
            if self.phase == "window":
                self.m.churn_connect_ns.append(now - c.started_ns)
            self._churn_next(c, self.plan.pipeline, now)
        elif self.sending:
            self._send_requests(c, self.plan.pipeline, now)

    def _say_hello(self, c: Conn) -> None:
        """An idle connection's one request (a few bytes: the socket takes it whole)."""
        frame = self.plan.idle_frame
        if not frame:
            return
        try:
            sent = os.write(c.fd, frame)
        except OSError as error:
            self._lose(c, _socket_error(error))
            return
        if sent < len(frame):
            self._lose(c, "short_write")
            return
        c.hello = True

    def _hello_reply(self, c: Conn, now: int) -> None:
        """Read an idle connection's one reply; anything else goes to the slow path, which
        names it (an ERROR 4 turning the connection away, say) and ends the connection."""
        try:
            data = c.sock.recv(len(self.plan.idle_reply) - len(c.partial))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(c, _socket_error(error))
            return
        if not data:
            self._lose(c, "eof")
            return
        c.partial += data
        reply = self.plan.idle_reply
        if not reply.startswith(bytes(c.partial)):
            c.hello = False
            data = bytes(c.partial)
            c.partial.clear()
            self._unusual_read(c, data, now)
        elif len(c.partial) == len(reply):
            c.partial.clear()
            c.hello = False
            self.idle_answered += 1

    def _start_drip(self, c: Conn, now: int) -> None:
        """Slowloris: the first part of the frame now, then a byte at a time (the first ones
        spread over one interval, so that a thousand connections do not send at once)."""
        plan = self.plan
        self._send_slow(c, plan.slow_first)
        step = (c.number * 7919) % DRIP_SPREAD + 1
        heapq.heappush(self.drips, (now + plan.slow_interval_ns * step // DRIP_SPREAD,
                                    c.number, c))

    def _send_slow(self, c: Conn, count: int) -> None:
        """Send the next ``count`` bytes of the slow frame, never its last byte."""
        frame = self.plan.slow_frame
        end = min(c.drip + count, len(frame) - 1)
        if end <= c.drip:
            return
        try:
            sent = os.write(c.fd, frame[c.drip:end])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(c, _socket_error(error))
            return
        c.drip += sent
        self.slow_bytes += sent

    def _drip(self, now: int) -> None:
        """Slowloris: one more byte on every slow connection whose turn has come (at most
        DRIP_BATCH of them per pass: the rest at the next ones)."""
        heap = self.drips
        interval = self.plan.slow_interval_ns
        batch = DRIP_BATCH
        while heap and heap[0][0] <= now and batch:
            batch -= 1
            _, number, c = heapq.heappop(heap)
            if c.dead:
                continue
            self._send_slow(c, 1)
            if not c.dead:
                heapq.heappush(heap, (now + interval, number, c))

    def _lose(self, c: Conn, reason: str | None) -> None:
        """Close ``c`` (counting ``reason`` as an error, if given); its requests are lost."""
        if c.dead:
            return
        if reason is not None:
            self._count_error(reason, _held(c))
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

    # ----------------------------------------------------------------- time and phases

    def _housekeeping(self, now: int) -> int:
        """Phase changes, interval boundaries, measuring upkeep, connects, timeouts, stops:
        each bounded in time, so that no pass holds up the load. The next time to come."""
        timeline = self.timeline
        m = self.m
        if self.phase == "warmup" and now >= self.next_warm:
            self._report_warm(now)
            timeline = self.timeline
        if self.phase == "warmup" and now >= timeline.window_ns:
            self._start_window(now)
        while self.phase == "window" and now >= min(m.next_interval, timeline.end_ns):
            until = min(m.next_interval, timeline.end_ns)
            m.end_interval(until)
            if until >= timeline.end_ns:
                self._end_window(until)
        tend = m.tend(now) if self.phase == "window" else NEVER
        if self.to_open and now >= self.next_connect:
            self._open_due(now)
        if self.drips and now >= self.drips[0][0]:
            self._drip(now)
        if now >= self.next_chore:
            self._chores(now)
        if self.finished:
            return now
        upcoming = [self.next_chore, tend]
        if self.phase == "warmup":
            upcoming += (timeline.window_ns, self.next_warm)
        elif self.phase == "window":
            upcoming.append(min(m.next_interval, timeline.end_ns))
        if self.to_open:
            upcoming.append(self.next_connect)
        if self.drips:
            upcoming.append(self.drips[0][0])
        return min(upcoming)

    def _chores(self, now: int) -> None:
        self.next_chore = now + CHORE_NS
        if self.phase == "warmup" and self.control is not None:
            self._take_window()
        self._look_for_timeouts(now)
        if Stop.requested or os.getppid() != self.parent:
            self._finish(now, "interrupted" if Stop.requested else "parent exited")
        elif not self.live and not self.to_open:
            lost = "no connection left" if self.established else "no connection established"
            self._finish(now, None if self.phase == "drain" else lost)
        elif self.phase == "drain" and (now >= self.timeline.drain_ns or not any(
                c.times for c in self.conns.values())):
            self._finish(now, None)

    def _look_for_timeouts(self, now: int) -> None:
        """Give up connections whose connect or oldest request took too long: at most
        CHORE_BATCH of them per look, so that ten thousand connections cost no pause."""
        if self.watch_at >= len(self.watch):
            self.watch = list(self.conns.values())
            self.watch_at = 0
        limit = now - self.plan.timeout_ns
        end = min(self.watch_at + CHORE_BATCH, len(self.watch))
        for c in self.watch[self.watch_at:end]:
            if c.dead:
                continue
            if not c.connected:
                if c.started_ns < limit:
                    self._lose(c, "connect_timeout")
            elif c.times and c.times[0] < limit:
                self._lose(c, "timeout")
        self.watch_at = end

    def _report_warm(self, now: int) -> None:
        """One warm-up slice to the parent: its replies, the busy connections answered at
        least once and those established (O(connections), every slice of the warm-up only)."""
        total = answered = 0
        for c in self.all_conns:
            total += c.count
            if c.count and not c.idle:
                answered += 1
        assert self.control is not None
        self.control.report(self.warm_index, total - self.warm_replies,
                            min(answered, self.plan.connections) + self.idle_answered,
                            self.established + self.idle_established + self.slow_established)
        self.warm_index += 1
        self.warm_replies = total
        self.next_warm += WARM_SLICE_NS

    def _take_window(self) -> None:
        """The parent's window, once decided: the timeline, the intervals and the open-loop
        schedule follow it."""
        assert self.control is not None
        decided = self.control.window() if self.next_warm != NEVER else None
        if decided is None:
            return
        window_ns, end_ns, drain_ns = decided
        self.timeline = dataclasses.replace(self.timeline, window_ns=window_ns, end_ns=end_ns,
                                            drain_ns=drain_ns)
        self.m.window_ns = self.m.next_interval = window_ns
        self.schedule.set_end(end_ns)
        self.next_warm = NEVER

    def _start_window(self, now: int) -> None:
        """Warm-up is over: forget its latencies, note counts and CPU."""
        self.phase = "window"
        for c in self.all_conns:  # O(connections), once: ~0.5 ms for ten thousand
            c.base = c.count
        self.m.start_window(now)

    def _end_window(self, now: int) -> None:
        """The measured window is over: no new requests; wait for the ones in flight."""
        self.phase = "drain"
        self.sending = False
        self.schedule.stop()
        for c in self.all_conns:
            if c.final is None:
                c.final = c.count
        held = [c for c in self.conns.values() if c.idle and c.connected]
        self.slow_alive = sum(1 for c in held if c.slow)
        self.idle_alive = len(held) - self.slow_alive
        self.m.end_window(now)

    def _finish(self, now: int, reason: str | None) -> None:
        """End the run now; if the window was still open, it ends here (partial figures)."""
        if self.phase == "window":
            self.m.end_interval(now)
            self._end_window(now)
        self.finished = True
        self.stopped = reason

    # ----------------------------------------------------------------- the result

    def _result(self) -> dict[str, Any]:
        """The worker's partial record, for the parent to merge (``swarm.build_record``)."""
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
            "idle": {"connections": self.plan.idle, "established": self.idle_established,
                     "answered": self.idle_answered,
                     "alive_at_end": self.idle_alive, "errors": errors.idle},
            "slowloris": {"connections": self.plan.slow, "established": self.slow_established,
                          "alive_at_end": self.slow_alive, "errors": errors.slow,
                          "bytes_sent": self.slow_bytes},
        }


def _held(c: Conn) -> str | None:
    """Which count a connection's errors go to: busy (None), ``"idle"`` or ``"slow"``."""
    if not c.idle:
        return None
    return "slow" if c.slow else "idle"


def _socket_error(error: OSError) -> str:
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    return f"socket_{errno.errorcode.get(error.errno or 0, error.errno)}"


def _connect_error(code: int | None) -> str:
    if code == errno.ECONNREFUSED:
        return "connect_refused"
    if code == errno.ETIMEDOUT:
        return "connect_timeout"
    return f"connect_{errno.errorcode.get(code or 0, code)}"


class PipeControl:
    """``Control`` over the worker's pipe to its parent (``clients.swarm``)."""

    def __init__(self, pipe: Any, index: int) -> None:
        self.pipe = pipe
        self.index = index

    def report(self, index: int, replies: int, answered: int, established: int) -> None:
        self.pipe.send(("warm", self.index, index, replies, answered, established))

    def window(self) -> tuple[int, int, int] | None:
        if not self.pipe.poll():
            return None
        message = self.pipe.recv()
        return tuple(message[1:4]) if message[0] == "window" else None


def worker_main(plan: WorkerPlan, pipe: Any) -> None:
    """Process entry: say ready, wait for the timeline, run, send the result back."""
    try:
        signal.signal(signal.SIGINT, _request_stop)
        signal.signal(signal.SIGTERM, _request_stop)
        raise_fd_limit()  # inherited from the parent already, unless started some other way
        set_timer_slack(TIMER_SLACK_NS)  # sleeps end when asked, not up to 50 µs later
        pipe.send(("ready", plan.index))
        deadline = time.monotonic() + 120
        while not pipe.poll(0.1):
            if Stop.requested or time.monotonic() > deadline:
                return
        message = pipe.recv()
        if message[0] != "start":
            return
        worker = Worker(plan, message[1],
                        lambda index, count, errors: pipe.send(("interval", plan.index, index,
                                                                count, errors)),
                        PipeControl(pipe, plan.index) if plan.steady else None)
        pipe.send(("result", plan.index, worker.run()))
    except KeyboardInterrupt:
        return
    except Exception as error:  # reported to the parent, which turns it into a clear error
        import traceback

        with contextlib.suppress(OSError):
            pipe.send(("error", plan.index, f"{error!r}\n{traceback.format_exc()}"))
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
    os._exit(0)  # nothing is buffered; skip the interpreter's slow teardown (numpy and all)
