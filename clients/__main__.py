"""``python -m clients swarm ...`` (load generator) and ``python -m clients chat ...``."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from clients import chat
from clients.config import SwarmConfig, SwarmError
from clients.mix import DEFAULT_MIX
from clients.record import EXIT_CANNOT_RUN, exit_status
from clients.summary import print_summary
from clients.swarm import run_swarm
from clients.wire import DEFAULT_PROTOCOL, WIRES
from protocol.launch import atomic_write_json

SWARM_EPILOG = """\
--mix SPEC: comma-separated op:arg=weight; arg is payload bytes for echo, iterations for work,
microseconds for sleep; weight defaults to 1. Example: echo:64=9,work:1000=1
With --protocol resp (a Redis server), the operations are ping (PING, answered +PONG) and
echo:N (ECHO of N bytes, answered with the same bulk string). Example: ping,echo:64

Workloads: --churn (a fresh connection per request: the record's churn block has
connections per second and the connect time), --slowloris M (M half-sent frames held open
beside the measured connections: the slowloris block), and any mix of several kinds (each
kind's latency on its own in latency_by_kind: head-of-line blocking).

Phases: connect (at --connect-rate, or all at once), warm-up (excluded from every figure),
the measured window (--duration), then a drain for replies still in flight (up to --timeout).

Open loop: requests follow a schedule at --rate. One due while every connection already has
--pipeline requests in flight waits for one, and that wait counts: latency runs from the
scheduled send (corrected for coordinated omission, as wrk2); the latency from the actual send
is reported beside it. The client is flagged saturated (in the record and loudly here) when a
worker's core is 90% busy or, in open loop, its own sends leave late; and, in open loop,
client.lag_is_tail says when its own send lateness is half the corrected p99 or p99.9 or more:
that tail is the client's, not the server's.

exit status: 0 the run completed without errors; 1 it ran but with errors, cut short (server
gone, not answering, Ctrl-C) or a worker failed: the figures are partial; 2 it could not run
(bad arguments, unknown host, workers not started, no connection established).
With --json the record is written in every case where a run started, partial or not.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_swarm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--connections", type=_positive_int, default=50,
                        help="connections in all (default 50)")
    parser.add_argument("--workers", type=_positive_int, default=1,
                        help="worker processes; connections are split among them (default 1)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured window, seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before the window, excluded (default 1)")
    parser.add_argument("--steady", action="store_true",
                        help="open the window only once every connection has been answered "
                             "and throughput has settled (--warmup is then the most the "
                             "warm-up may take; the record's steady block says what happened)")
    parser.add_argument("--min-requests", type=int, default=0, metavar="N",
                        help="with --steady: make the window long enough for N replies at the "
                             "settled rate, from --duration up to --max-duration (default 0)")
    parser.add_argument("--max-duration", type=float, default=0.0, metavar="S",
                        help="with --min-requests: the longest window, seconds (default: "
                             "--duration)")
    parser.add_argument("--mode", choices=("closed", "open"), default="closed",
                        help="closed: a new request as each reply comes; open: at --rate, "
                             "latency from the scheduled send (default closed)")
    parser.add_argument("--pipeline", type=_positive_int, default=1,
                        help="requests in flight per connection (open loop: the cap; default 1)")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: total requests per second across all connections")
    parser.add_argument("--arrivals", choices=("constant", "poisson"), default="constant",
                        help="open loop: spacing of the schedule (default constant)")
    parser.add_argument("--protocol", choices=tuple(WIRES), default=DEFAULT_PROTOCOL,
                        help="what to speak: concbench (the suite's frames, docs/protocol.md) or "
                             "resp (Redis: --mix of ping and echo:N) (default "
                             f"{DEFAULT_PROTOCOL})")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"request mix (default {DEFAULT_MIX})")
    parser.add_argument("--connect-rate", type=float, default=0.0,
                        help="new connections per second during ramp-up (default 0: all at once)")
    parser.add_argument("--idle-connections", type=int, default=0, metavar="N",
                        help="N more connections, opened after the busy ones and held without "
                             "sending (C10K): they count for connect errors and over_capacity "
                             "(ERROR 4), never for latency or throughput (default 0)")
    parser.add_argument("--requests-per-connection", type=int, default=0, metavar="K",
                        help="churn: each connection makes K requests (one at a time, or up "
                             "to --pipeline), is closed, and a fresh one takes its place; "
                             "closed loop only (default 0: connections last the whole run)")
    parser.add_argument("--churn", action="store_const", const=1,
                        dest="requests_per_connection",
                        help="every request on a fresh connection: --requests-per-connection 1")
    parser.add_argument("--slowloris", type=int, default=0, metavar="M",
                        help="M more connections, opened first and held for the whole run, "
                             "each sending part of a frame and then one byte every "
                             "--slowloris-interval seconds, never finishing it; their fate is "
                             "counted on its own, not in the errors (default 0)")
    parser.add_argument("--dedicated", type=int, default=0, metavar="N",
                        help="the first N connections send only the mix's first kind, and the "
                             "others never send it (a convoy: one long WORK beside small "
                             "ECHOs, --mix work:300000,echo:64 --dedicated 1); default 0: "
                             "every connection draws from the whole mix")
    parser.add_argument("--slowloris-interval", type=float, default=2.0, metavar="S",
                        help="seconds between a slow connection's bytes (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds a connect or a reply may take (a reply: beyond the "
                             "longest SLEEP in the mix) before its connection is given up as "
                             "an error (default 5)")
    parser.add_argument("--verify", action="store_true",
                        help="check WORK results against protocol.work")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds per reported interval (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed for mixes and arrivals")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the result record here ('-': standard output, and the "
                             "summary goes to standard error)")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary")


def _write_json(record: dict[str, Any], path: str) -> None:
    """``-``: standard output; a path: written atomically (a reader never sees half)."""
    if path != "-":
        atomic_write_json(Path(path), record)
        return
    sys.stdout.write(json.dumps(record, indent=1) + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def swarm_main(options: argparse.Namespace) -> int:
    console = Console(stderr=options.json == "-")
    status_console = Console(stderr=True)
    config = SwarmConfig(
        target=options.target, connections=options.connections, workers=options.workers,
        duration=options.duration, warmup=options.warmup, mode=options.mode,
        pipeline=options.pipeline, rate=options.rate, arrivals=options.arrivals, mix=options.mix,
        connect_rate=options.connect_rate, timeout=options.timeout, verify=options.verify,
        interval=options.interval, seed=options.seed,
        idle_connections=options.idle_connections,
        requests_per_connection=options.requests_per_connection,
        slowloris=options.slowloris, slowloris_interval=options.slowloris_interval,
        dedicated=options.dedicated, protocol=options.protocol, steady=options.steady,
        min_requests=options.min_requests,
        max_duration=options.max_duration)
    signal.signal(signal.SIGTERM, _interrupt)  # the bench runner stops us with SIGTERM
    show = status_console.is_terminal and not options.quiet

    def progress(live: dict[str, Any]) -> None:
        rate = live["requests"] / live["interval_s"]
        status_console.log(f"interval {live['interval']}: {rate:,.0f} req/s, "
                           f"{live['errors']} errors")

    try:
        with status_console.status("running…") if show else contextlib.nullcontext():
            record = run_swarm(config, progress if show else None)
    except SwarmError as error:
        status_console.print(f"[bold red]swarm: {error}[/]")
        return EXIT_CANNOT_RUN
    if options.json:
        _write_json(record, options.json)
    if not options.quiet:
        print_summary(record, console)
    return exit_status(record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients",
                                     description="concbench clients: the load-generating swarm "
                                                 "and the interactive chat client")
    commands = parser.add_subparsers(dest="command", required=True)
    swarm = commands.add_parser("swarm", help="drive a server with many connections, measure",
                                description="Drive one server with many connections from "
                                            "worker processes (each an epoll loop) and "
                                            "measure it: latency (HdrHistogram), throughput, "
                                            "per-second intervals, fairness, errors.",
                                epilog=SWARM_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_swarm_arguments(swarm)
    chatter = commands.add_parser("chat", help="the original lesson's interactive client",
                                  description=chat.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    chat.add_arguments(chatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    if options.command == "swarm":
        return swarm_main(options)
    return chat.main(options)


if __name__ == "__main__":
    sys.exit(main())
