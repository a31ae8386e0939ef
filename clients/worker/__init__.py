"""One swarm worker: its share of the connections, driven straight from ``select.epoll``.

- core.py: the ``Worker`` every shape shares: connections, the slow path, time and phases,
  measurement and the partial record (its docstring explains the fast path);
- one module per load shape: closed_loop.py, open_loop.py (uniform or Poisson arrivals),
  churn.py; and per kind of connection held beside the load: idle.py, slowloris.py;
- conn.py: one connection (``Conn``) and the base of the held kinds (``Held``);
- process.py: the worker process (its entry point, signals, the pipe to its parent).

``make_worker`` puts a plan's shape and held kinds together; a new load shape is a module here
and one line in it.
"""

from __future__ import annotations

from collections.abc import Callable

from clients._measure import Progress
from clients.plan import Timeline, WorkerPlan
from clients.worker.churn import Churn
from clients.worker.closed_loop import ClosedLoop
from clients.worker.core import Worker
from clients.worker.idle import Idle
from clients.worker.open_loop import OpenLoop
from clients.worker.phases import Control
from clients.worker.slowloris import Slowloris


def make_worker(plan: WorkerPlan, timeline: Timeline, progress: Progress | None = None,
                control: Control | None = None,
                drained: Callable[[], None] | None = None) -> Worker:
    """The worker for ``plan``: its load shape, with its idle and slow connections."""
    shape: type[Worker]
    if plan.mode == "open":
        shape = OpenLoop
    elif plan.requests_per_connection:
        shape = Churn
    else:
        shape = ClosedLoop
    return shape(plan, timeline, progress, control, held=(Slowloris, Idle), drained=drained)
