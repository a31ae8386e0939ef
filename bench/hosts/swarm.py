"""The swarm across load hosts: ``bench/run/swarm_service.py``'s interface, over execnet.

A trial goes like this. ``run(args)`` parses the swarm's arguments with the swarm's own parser
(``clients.service.config_from``), spreads the workers over the load hosts (each host's
``workers``; the connections and the open-loop rate follow the workers, as in one swarm), fixes
the seed, re-measures each host's clock offset and hands each host its workers' indices
("prepare"). Each host takes workers from its pool and says "ready"; once all have, the
coordinator sends every host the one timeline, in that host's clock ("go"): they connect, warm
up and measure over the same window. Each host says when its workers have drained and then
sends each worker's partial record (JSON, with its encoded histograms). The coordinator puts
the windows back on its own clock and merges everything with the swarm's own
``build_record``: the histograms add losslessly. Per host it keeps requests, errors, latency
and client saturation (``hosts.load``), so a saturated load host is named.

A host that goes away mid-trial fails the trial (``ServiceError`` naming it): the others are
told to stop, and the host is opened again for the next trial.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import execnet

from bench.hosts.session import (
    LOAD_HELLO_TIMEOUT_S,
    REPLY_TIMEOUT_S,
    Host,
    HostError,
    HostsSession,
    request,
    start_agent,
)
from bench.load import ServiceError, ServiceInterrupted, ServiceTimeout
from clients.config import SwarmConfig, SwarmError
from clients.plan import Timeline
from clients.record import EXIT_CANNOT_RUN, build_record, exit_status
from clients.service import config_from
from clients.swarm import _share, _timeline
from protocol.launch import atomic_write_json

POLL_S = 0.005
GO_DELAY_S = 0.05  # "go" to the start of connecting, at least (or three round trips)
ABORT_WAIT_S = 5.0  # a host told to stop must say done within this, or its gateway is closed


def split_workers(capacities: list[int], total: int) -> list[int]:
    """``total`` workers over hosts in proportion to their capacities (largest remainder)."""
    whole = sum(capacities)
    if total >= whole:
        return list(capacities)
    exact = [total * c / whole for c in capacities]
    counts = [int(x) for x in exact]
    order = sorted(range(len(capacities)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def fixed_window(config: SwarmConfig) -> dict[str, Any]:
    """Across hosts the window is fixed in advance: the steady-state gate decides from its own
    workers' reports (clients/_steady.py), and hosts that each decided would open different
    windows. So the gate is off (the record says ``steady.checked`` false) and the window takes
    the longest the case allows, to hold as many requests as the gate would have asked for."""
    if not config.steady:
        return {}
    return {"steady": False, "min_requests": 0,
            "duration": max(config.duration, config.max_duration)}


@dataclasses.dataclass
class _HostShare:
    host: Host
    indices: list[int]
    connections: int
    ready: bool = False
    drained: bool = False
    done: bool = False
    interrupted: bool = False
    error: str | None = None


@dataclasses.dataclass
class _TrialState:
    trial: int
    config: SwarmConfig
    json_path: str | None
    started_at: str
    shares: list[_HostShare]
    timeline: Timeline | None = None
    results: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    failures: dict[int, str] = dataclasses.field(default_factory=dict)
    reply: dict[str, Any] | None = None  # the "done" reply, once the record is written


class HostsSwarm:
    """The swarm service's methods (run, wait, abandon, close), on the session's load hosts."""

    def __init__(self, session: HostsSession) -> None:
        self.session = session
        self.channels: dict[str, Any] = {}  # host name -> its load channel
        self.workers: dict[str, int] = {}  # host name -> workers in its pool
        self.starts = 0  # load agents started (a host opened again adds one)
        self._trial = 0
        self._state: _TrialState | None = None

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        for host in self.session.load:
            self._open(host)

    def ensure_started(self) -> None:
        for host in self.session.load:
            if not host.alive() or host.spec.name not in self.channels \
                    or self.channels[host.spec.name].isclosed():
                self._open(host)

    def _open(self, host: Host) -> None:
        name = host.spec.name
        self.channels.pop(name, None)
        try:
            if not host.alive():
                self.session.reopen(host)
            channel = start_agent(host.gateway, host.who)
            hello = request(channel, {"role": "load", "root": host.root,
                                      "cpus": list(host.spec.cpus) if host.spec.cpus else None,
                                      "workers": self._capacity(host)},
                            ("hello",), LOAD_HELLO_TIMEOUT_S, host.who)
        except HostError as error:
            raise ServiceError(str(error)) from None
        self.channels[name], self.workers[name] = channel, int(hello["workers"])
        self.starts += 1

    @staticmethod
    def _capacity(host: Host) -> int:
        """Workers there: the file's, else one per CPU it gives, else one per CPU there."""
        spec = host.spec
        return spec.workers or len(spec.cpus or ()) or len(host.hello.get("cpus") or [0])

    def close(self) -> None:
        for channel in self.channels.values():
            try:
                channel.send({"op": "quit"})
                channel.waitclose(REPLY_TIMEOUT_S)
            except (OSError, EOFError, ValueError, execnet.RemoteError,
                    execnet.TimeoutError):
                pass
        self.channels = {}
        self._state = None

    def abandon(self) -> None:
        """Stop the current trial on every host; a host that does not stop in time is closed
        (opened again for the next trial)."""
        state, self._state = self._state, None
        if state is None:
            return
        for share in state.shares:
            if not share.done:
                self._send(share, {"op": "abort"})
        deadline = time.monotonic() + ABORT_WAIT_S
        waiting = [s for s in state.shares if not s.done and not s.error]
        while waiting and time.monotonic() < deadline:
            for share in list(waiting):
                try:
                    for message in self._messages(share):
                        if message.get("op") == "done" and message.get("trial") == state.trial:
                            share.done = True
                except HostError:
                    share.error = "went away"
                if share.done or share.error:
                    waiting.remove(share)
            time.sleep(POLL_S)
        for share in waiting + [s for s in state.shares if s.error]:
            share.host.close()
            self.channels.pop(share.host.spec.name, None)

    # -- one trial ----------------------------------------------------------------------------

    def run(self, args: list[str]) -> None:
        """Hand out one trial: parse, split, measure clocks, "prepare" on every load host."""
        self._state = None
        self.ensure_started()
        try:
            config, json_path = config_from(args)
            shares = self._shares(config)
            total = sum(len(share.indices) for share in shares)
            seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4),
                                                                              "big")
            config = dataclasses.replace(config, workers=total, seed=seed, **fixed_window(config))
            config.check()
        except SwarmError as error:
            raise ServiceError(f"swarm: {error}") from None
        self._trial += 1
        state = _TrialState(self._trial, config, json_path,
                            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), shares)
        for share in shares:
            share.connections = sum(_share(config.connections, total, i) for i in share.indices)
            try:
                share.host.measure_clock()
            except HostError as error:
                raise ServiceError(str(error)) from None
            self._send(share, {"op": "prepare", "trial": state.trial,
                               "config": dataclasses.asdict(config), "indices": share.indices})
        self._state = state

    def _shares(self, config: SwarmConfig) -> list[_HostShare]:
        hosts = self.session.load
        counts = split_workers([self.workers[h.spec.name] for h in hosts],
                               min(sum(self.workers.values()), config.connections))
        shares, first = [], 0
        for host, count in zip(hosts, counts, strict=True):
            if count:
                shares.append(_HostShare(host, list(range(first, first + count)), 0))
                first += count
        return shares

    def _send(self, share: _HostShare, message: dict[str, Any]) -> None:
        try:
            self.channels[share.host.spec.name].send(message)
        except (OSError, EOFError, ValueError, KeyError) as error:
            share.error = f"{share.host.who} went away: {error or 'its gateway closed'}"

    def _messages(self, share: _HostShare) -> list[dict[str, Any]]:
        """Whatever this host has sent so far (HostError if it went away)."""
        channel = self.channels.get(share.host.spec.name)
        if channel is None:
            raise HostError(f"{share.host.who} went away")
        messages = []
        while True:
            try:
                messages.append(channel.receive(0))
            except channel.TimeoutError:
                return messages
            except (EOFError, OSError) as error:
                raise HostError(f"{share.host.who} went away mid-trial: "
                                f"{error or 'its gateway closed'}") from None
            except execnet.RemoteError as error:
                raise HostError(f"{share.host.who} failed mid-trial: "
                                f"{str(error.formatted).strip().splitlines()[-1:]}") from None

    def wait(self, op: str, deadline: float, stop: Any = None) -> dict[str, Any]:
        """The trial's ``started``, ``drained`` or ``done`` reply, as the swarm service gives
        them (ServiceTimeout, ServiceInterrupted, ServiceError likewise)."""
        while True:
            state = self._state
            if state is None:
                raise ServiceError("no trial is running on the load hosts (it was stopped)")
            self._pump(state)
            reply = self._reply(state, op)
            if reply is not None:
                return reply
            if stop is not None and stop.is_set():
                raise ServiceInterrupted
            if time.monotonic() > deadline:
                raise ServiceTimeout("the load hosts did not finish in time")
            time.sleep(POLL_S)

    def _pump(self, state: _TrialState) -> None:
        for share in state.shares:
            try:
                if share.error:
                    raise HostError(share.error)
                for message in self._messages(share):
                    if message.get("trial") == state.trial:
                        self._take(state, share, message)
                    elif message.get("op") == "failed":
                        raise HostError(f"{share.host.who}: {message.get('error')}")
            except HostError as error:
                self.abandon()
                raise ServiceError(str(error)) from None
        if state.timeline is None and all(s.ready or s.done for s in state.shares):
            self._go(state)

    def _take(self, state: _TrialState, share: _HostShare, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            share.ready = True
        elif op == "drained":
            share.drained = True
        elif op == "result":
            result = json.loads(message["result"])
            for key in ("window_start_ns", "window_end_ns"):  # back on our clock
                if result.get(key) is not None:
                    result[key] -= share.host.offset_ns
            state.results[int(message["index"])] = result
        elif op == "failure":
            state.failures[int(message["index"])] = f"{share.host.spec.name}: {message['why']}"
        elif op == "done":
            share.done = share.drained = True
            share.interrupted = bool(message.get("interrupted"))
            if message.get("error"):
                for index in share.indices:
                    state.failures.setdefault(index, f"{share.host.spec.name}: "
                                                     f"{message['error']}")

    def _go(self, state: _TrialState) -> None:
        """The common timeline: from now plus GO_DELAY_S, in each host's clock."""
        planned = _timeline(state.config)
        slowest_ns = max((s.host.rtt_ns or 0) for s in state.shares)
        delay_ns = max(int(GO_DELAY_S * 1e9), 3 * slowest_ns)  # "go" must arrive before it
        shift = planned.start_ns - (time.monotonic_ns() + delay_ns)
        state.timeline = Timeline(*(v - shift for v in dataclasses.astuple(planned)))
        for share in state.shares:
            if not share.done:
                self._send(share, {"op": "go", "timeline_ns": [
                    v + share.host.offset_ns for v in dataclasses.astuple(state.timeline)]})

    def _reply(self, state: _TrialState, op: str) -> dict[str, Any] | None:
        if op == "started":
            if state.timeline is None:
                return None
            return {"op": "started", "window_s": [state.timeline.window_ns / 1e9,
                                                  state.timeline.end_ns / 1e9]}
        if op == "drained":
            return {"op": "drained"} if all(s.drained for s in state.shares) else None
        if not all(s.done for s in state.shares):
            return None
        if state.reply is None:
            state.reply = self._finish(state)
        return state.reply

    # -- the record ---------------------------------------------------------------------------

    def _finish(self, state: _TrialState) -> dict[str, Any]:
        """Merge the hosts' workers into the swarm record, with the per-host figures."""
        if not state.results:
            why = "; ".join(sorted(set(state.failures.values()))) or "no worker reported"
            return {"op": "done", "status": EXIT_CANNOT_RUN, "error": why,
                    "log": f"swarm across hosts: {why}\n"}
        interrupted = any(s.interrupted for s in state.shares)
        record = build_record(state.config, _as_run(state, state.results, state.failures,
                                                    interrupted), state.started_at)
        per_host = [self._host_figures(state, share, interrupted) for share in state.shares]
        reasons = [f"{h['name']}: {why}" for h in per_host for why in h["client_reasons"]]
        if reasons:
            record["client"].update(saturated=True, reasons=reasons)
        record["hosts"] = {"server": self.session.server.describe(), "load": per_host,
                           "address": self.session.file.address,
                           "notes": self.session.shared_cpus()}
        if state.json_path:
            atomic_write_json(Path(state.json_path), record)
        log = "".join(f"worker {i} failed: {why}\n" for i, why in sorted(state.failures.items()))
        if record["client"]["reasons"]:
            log += "client saturated: " + "; ".join(record["client"]["reasons"]) + "\n"
        return {"op": "done", "status": exit_status(record), "error": None, "log": log}

    def _host_figures(self, state: _TrialState, share: _HostShare, interrupted: bool
                      ) -> dict[str, Any]:
        """One host's share of the trial, through the same record builder."""
        mine = set(share.indices)
        results = {i: r for i, r in state.results.items() if i in mine}
        failures = {i: why for i, why in state.failures.items() if i in mine}
        figures: dict[str, Any] = {**share.host.describe(), "worker_indices": share.indices,
                                   "workers": len(share.indices),
                                   "connections": share.connections}
        if not results:
            return {**figures, "requests": 0, "errors_total": None, "throughput_rps": None,
                    "latency_us": None, "client_saturated": None,
                    "client_reasons": [], "failures": failures}
        part = build_record(dataclasses.replace(state.config, workers=len(share.indices)),
                            _as_run(state, results, failures, interrupted), state.started_at)
        return {**figures, "requests": part["requests"], "errors": part["errors"],
                "errors_total": part["errors_total"], "throughput_rps": part["throughput_rps"],
                "latency_us": part["latency_us"], "histogram": part["histogram"],
                "client_cpu_percent": part["client"]["cpu_percent"],
                "client_saturated": part["client"]["saturated"],
                "client_reasons": part["client"]["reasons"], "failures": failures}


def _as_run(state: _TrialState, results: dict[int, dict[str, Any]], failures: dict[int, str],
            interrupted: bool) -> Any:
    """What ``clients.record.build_record`` reads of a run (``clients.record.Outcome``)."""
    return SimpleNamespace(results=results, failures=failures, interrupted=interrupted,
                           timeline=state.timeline, steady=None)  # fixed_window: no gate
