"""A swarm worker process (``clients.swarm`` spawns them): signals, the pipe to the parent."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from typing import Any

from clients._schedule import TIMER_SLACK_NS, set_timer_slack
from clients.plan import WorkerPlan
from clients.worker import make_worker
from clients.worker.phases import Stop
from protocol.launch import raise_fd_limit


def request_stop(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM: the worker finishes now with what it has measured."""
    Stop.requested = True


class PipeControl:
    """``core.Control`` over the worker's pipe to its parent (``clients.swarm``)."""

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
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
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
        worker = make_worker(plan, message[1],
                             lambda index, count, errors: pipe.send(("interval", plan.index,
                                                                     index, count, errors)),
                             PipeControl(pipe, plan.index) if plan.steady else None)
        pipe.send(("result", plan.index, worker.run()))
    except KeyboardInterrupt:
        return
    except Exception as error:  # reported to the parent, which turns it into a clear error
        with contextlib.suppress(OSError):
            pipe.send(("error", plan.index, f"{error!r}\n{traceback.format_exc()}"))
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
    os._exit(0)  # nothing is buffered; skip the interpreter's slow teardown (numpy and all)
