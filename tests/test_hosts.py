"""Runs across hosts (bench/hosts/), with network namespaces standing in for the hosts.

The namespace tests need root and ``ip`` (skipped with the reason otherwise). The testbed
(``bench.hosts.netns.Testbed``) makes a server namespace and two load namespaces on a private
/24 of 198.18.0.0/15 that exists only inside them, with no default route, and removes them
afterwards, also on failure. Every process that sends to a test address runs inside one of
them: the gateways are ``popen//python=ip netns exec NS python``, the counting server is
started the same way, and this test process (in the root namespace) only talks to the
gateways over their pipes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from bench import REPO_ROOT
from bench.hosts import agent, netns
from bench.hosts.config import HostsFileError, load_hosts, parse_hosts
from bench.hosts.swarm import split_workers
from bench.launch import LaunchFailed, child_env
from bench.load import ServiceError
from clients._measure import new_histogram
from clients.record import _merge

PYTHON = sys.executable
DEADLINE_S = 60.0


# ------------------------------------------------------------------------ without root


def test_a_hosts_file_is_read_and_its_mistakes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text('[server]\ngateway = "popen//python=python3"\naddress = "10.0.0.5"\n'
                    'cpus = [0, 1]\n[[load]]\ngateway = "popen//python=python3"\nworkers = 4\n'
                    '[[load]]\nname = "far"\ngateway = "ssh=b@h//python=/p"\ncode = "ship"\n')
    hosts = load_hosts(path)
    assert hosts.address == "10.0.0.5" and hosts.server.cpus == (0, 1)
    assert [h.name for h in hosts.load] == ["load1", "far"]
    assert hosts.load[0].workers == 4 and hosts.load[1].code == "ship"
    bad = {
        r"a \[server\] table is required": {"load": [{"gateway": "g"}]},
        "address is required": {"server": {"gateway": "g"}, "load": [{"gateway": "g"}]},
        "is a wildcard": {"server": {"gateway": "g", "address": "0.0.0.0"},
                          "load": [{"gateway": "g"}]},
        r"at least one \[\[load\]\]": {"server": {"gateway": "g", "address": "h"}},
        "unknown key.*wrokers": {"server": {"gateway": "g", "address": "h"},
                                 "load": [{"gateway": "g", "wrokers": 2}]},
        "workers must be a positive": {"server": {"gateway": "g", "address": "h"},
                                       "load": [{"gateway": "g", "workers": 0}]},
        "cpus must be a list": {"server": {"gateway": "g", "address": "h", "cpus": "0"},
                                "load": [{"gateway": "g"}]},
        "gateway is required": {"server": {"address": "h"}, "load": [{"gateway": "g"}]},
        "names must differ": {"server": {"gateway": "g", "address": "h"},
                              "load": [{"gateway": "g", "name": "server"}]},
    }
    for message, data in bad.items():
        with pytest.raises(HostsFileError, match=message):
            parse_hosts(data, path)
    path.write_text("[server\n")
    with pytest.raises(HostsFileError, match="not valid TOML"):
        load_hosts(path)


def test_workers_are_split_over_hosts_by_their_capacity() -> None:
    assert split_workers([4, 4], 8) == [4, 4]
    assert split_workers([4, 4], 20) == [4, 4]  # never more than a host holds
    assert split_workers([3, 1], 2) == [2, 0] or split_workers([3, 1], 2) == [1, 1]
    assert sum(split_workers([3, 2, 2], 5)) == 5
    assert split_workers([1, 1], 1) in ([1, 0], [0, 1])


def test_the_code_fingerprint_covers_exactly_the_shipped_sources(tmp_path: Path) -> None:
    for relative in ("protocol/codec.py", "servers/native/server.c", "bench/scenarios/q.toml",
                     "clients/x.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("one")
    first = agent.fingerprint(str(tmp_path))
    (tmp_path / "servers/native/build").mkdir()
    (tmp_path / "servers/native/build/server").write_text("a build product")
    (tmp_path / "clients/__pycache__").mkdir()
    (tmp_path / "clients/__pycache__/x.cpython-311.pyc").write_text("cache")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/t.py").write_text("not shipped")
    assert agent.fingerprint(str(tmp_path)) == first
    (tmp_path / "clients/x.py").write_text("two")
    assert agent.fingerprint(str(tmp_path)) != first
    assert agent.fingerprint(str(tmp_path / "tests")) is None
    assert agent.is_shipped("servers/native", is_dir=True)
    assert not agent.is_shipped("servers/native/build/server")


def test_the_session_launches_a_trials_server_on_the_server_host(tmp_path: Path) -> None:
    """HostsSession is the runner's launcher across hosts: the model bound to the hosts file's
    address on port 0; a trial for another interpreter is refused (each host runs its own)."""
    from types import SimpleNamespace

    from bench.hosts.session import HostsSession
    from bench.run import planning, scenario

    loaded = scenario.from_dict({"name": "t", "group": [{"name": "echo", "connections": 2}]})
    spec = planning.plan(loaded, [scenario.ModelSpec("epoll", "epoll", ("--backlog", "64"),
                                                     sys.executable)])[0]
    calls: list[tuple[Any, ...]] = []
    session = SimpleNamespace(file=SimpleNamespace(address="198.18.7.1"),
                              launch_server=lambda *args: calls.append(args) or "started")
    out, err = tmp_path / "out", tmp_path / "err"
    assert HostsSession.launch(session, spec, None, out, err) == "started"  # type: ignore[arg-type]
    assert calls == [(["epoll", "--host", "198.18.7.1", "--port", "0", "--backlog", "64"],
                      out, err, {})]
    other = replace(spec, server=replace(spec.server, interpreter="/opt/python3.13t"))
    with pytest.raises(LaunchFailed, match="/opt/python3.13t: a run across hosts uses each"):
        HostsSession.launch(session, other, None, out, err)  # type: ignore[arg-type]


def test_merged_histograms_give_the_percentiles_of_the_concatenated_samples() -> None:
    """The hosts' histograms are merged (clients.swarm._merge, as for workers): the result
    is the histogram of all samples at once, and its percentiles those of the raw samples
    to the histogram's precision (3 significant digits)."""
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(5, 1, 20_000).astype(int) + 1, rng.lognormal(6, 0.5, 5_000)
             .astype(int) + 1]
    encoded, everything = [], new_histogram()
    for samples in parts:
        histogram = new_histogram()
        for value in samples:
            histogram.record_value(int(value))
            everything.record_value(int(value))
        encoded.append(histogram.encode().decode("ascii"))
    merged = _merge(encoded)
    raw = np.sort(np.concatenate(parts))
    assert merged.get_total_count() == raw.size
    for percentile in (50, 90, 99, 99.9):
        assert merged.get_value_at_percentile(percentile) == \
            everything.get_value_at_percentile(percentile)
        # the sample of HdrHistogram's rank (the nearest rank, rounded), to its precision
        rank = max(1, int(percentile * raw.size / 100 + 0.5))
        exact = int(raw[rank - 1])
        assert merged.get_value_at_percentile(percentile) == \
            merged.get_highest_equivalent_value(exact)


# ------------------------------------------------------------------------ namespaces

REASON = netns.available()
needs_namespaces = pytest.mark.skipif(REASON is not None, reason=f"namespaces: {REASON}")


@pytest.fixture(scope="module")
def bed() -> Iterator[netns.Testbed]:
    if REASON is not None:
        pytest.skip(f"namespaces: {REASON}")
    with netns.Testbed(load_hosts=2) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def hosts_path(bed: netns.Testbed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hosts") / "hosts.toml"
    path.write_text(bed.hosts_toml(PYTHON, server_cpus=[0], load_cpus=[[1], [1]]))
    return path


@pytest.fixture(scope="module")
def session(hosts_path: Path) -> Iterator[Any]:
    from bench.hosts.session import HostsSession

    hosts = HostsSession(load_hosts(hosts_path))
    hosts.open()
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture(scope="module")
def swarm(session: Any) -> Iterator[Any]:
    from bench.hosts.swarm import HostsSwarm

    driver = HostsSwarm(session)
    driver.start()
    try:
        yield driver
    finally:
        driver.close()


@contextlib.contextmanager
def counting_server(bed: netns.Testbed) -> Iterator[tuple[tuple[str, int], dict[str, int]]]:
    """tests/_counting_server.py inside the server namespace: its address, then its count."""
    proc = subprocess.Popen([*bed.exec_prefix(bed.server_ns), PYTHON,
                             str(REPO_ROOT / "tests" / "_counting_server.py"),
                             "--host", bed.server_address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(REPO_ROOT), cwd=REPO_ROOT)
    tally: dict[str, int] = {}
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        assert ready, "the counting server did not print READY"
        _, host, port = proc.stdout.readline().decode().split()
        yield (host, int(port)), tally
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        tally["count"] = int(err.decode().split("COUNT")[-1].split()[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def run_trial(swarm: Any, tmp_path: Path, target: tuple[str, int], *extra: str,
              duration: float = 1.0) -> dict[str, Any]:
    """One trial on the load hosts, as the runner drives it; the merged swarm record."""
    path = tmp_path / f"swarm-{time.monotonic_ns()}.json"
    swarm.run(["--target", f"{target[0]}:{target[1]}", "--connections", "8", "--duration",
               f"{duration:g}", "--warmup", "0.3", "--json", str(path), *extra])
    deadline = time.monotonic() + DEADLINE_S
    for op in ("started", "drained"):
        swarm.wait(op, deadline)
    done = swarm.wait("done", deadline)
    assert done["status"] in (0, 1), done
    return json.loads(path.read_text())


def pids_in(namespace: str) -> set[int]:
    return set(netns.namespace_pids(namespace))


@needs_namespaces
def test_the_merged_count_is_the_servers_own_count(bed: netns.Testbed, swarm: Any,
                                                   tmp_path: Path) -> None:
    with counting_server(bed) as (address, tally):
        record = run_trial(swarm, tmp_path, address)
    load = record["hosts"]["load"]
    assert [host["name"] for host in load] == ["load1", "load2"]
    assert [host["connections"] for host in load] == [4, 4]
    assert all(host["requests"] > 0 for host in load)
    assert sum(host["requests"] for host in load) == record["requests"]
    assert record["totals"]["sent"] == record["totals"]["answered_ok"] == tally["count"]
    assert record["errors_total"] == 0
    merged = HdrHistogram.decode(record["histogram"])
    added = _merge([host["histogram"] for host in load])
    assert merged.get_total_count() == added.get_total_count() == record["requests"]
    for percentile in (50, 99, 99.9):
        assert merged.get_value_at_percentile(percentile) == \
            added.get_value_at_percentile(percentile)


@needs_namespaces
def test_a_tbf_link_caps_a_large_payload_case_at_the_link_rate(bed: netns.Testbed, swarm: Any,
                                                              tmp_path: Path) -> None:
    payload, rate_mbit = 32768, 40.0
    try:
        for host in ("load1", "load2"):
            bed.cap(host, rate_mbit)
        with counting_server(bed) as (address, _):
            capped = run_trial(swarm, tmp_path, address, "--mix", f"echo:{payload}",
                               duration=1.5)
    finally:
        for host in ("load1", "load2"):
            bed.uncap(host)
    with counting_server(bed) as (address, _):
        free = run_trial(swarm, tmp_path, address, "--mix", f"echo:{payload}", duration=1.5)
    link_bytes_s = 2 * rate_mbit * 1e6 / 8  # both links, replies only (the capped direction)
    capped_bytes_s = capped["throughput_rps"] * payload
    assert 0.5 * link_bytes_s < capped_bytes_s < 1.05 * link_bytes_s, capped_bytes_s
    assert free["throughput_rps"] * payload > 2 * link_bytes_s


@needs_namespaces
def test_a_load_host_killed_mid_trial_fails_the_trial_and_the_next_one_runs(
        bed: netns.Testbed, session: Any, swarm: Any, tmp_path: Path) -> None:
    victim = session.load[1]
    with counting_server(bed) as (address, _):
        swarm.run(["--target", f"{address[0]}:{address[1]}", "--connections", "8",
                   "--duration", "3", "--warmup", "0.2", "--json", str(tmp_path / "x.json")])
        deadline = time.monotonic() + DEADLINE_S
        swarm.wait("started", deadline)
        os.kill(int(victim.hello["pid"]), signal.SIGKILL)
        with pytest.raises(ServiceError, match="load host load2 .* went away"):
            swarm.wait("done", deadline)
        gone_by = time.monotonic() + 10
        while pids_in(bed.load_ns[1]) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert pids_in(bed.load_ns[1]) == set(), "workers outlived their host's agent"
        record = run_trial(swarm, tmp_path, address)  # load2 is opened again
    assert all(host["requests"] > 0 for host in record["hosts"]["load"])


@needs_namespaces
def test_a_server_that_never_prints_ready_fails_and_leaves_nothing(
        bed: netns.Testbed, session: Any, tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "sitecustomize.py").write_text("import time\ntime.sleep(120)\n")
    server = session.launch_server(["epoll", "--host", bed.server_address, "--port", "0"],
                                   tmp_path / "out", tmp_path / "err",
                                   {"PYTHONPATH": f"{hang}{os.pathsep}{session.server.root}"})
    with pytest.raises(LaunchFailed, match="did not print READY within 1 s"):
        server.wait_ready(1.0)
    stopped = server.stop(1.0)
    assert stopped.returncode is not None or stopped.killed
    assert pids_in(bed.server_ns) == {int(session.server.hello["pid"])}
    wrong = session.launch_server(["epoll", "--host", "198.51.100.7", "--port", "0"],
                                  tmp_path / "out2", tmp_path / "err2")
    with pytest.raises(LaunchFailed, match="exited with status"):
        wrong.wait_ready(15.0)
    wrong.stop(1.0)
    assert pids_in(bed.server_ns) == {int(session.server.hello["pid"])}


@needs_namespaces
def test_a_server_host_lost_mid_trial_is_named_and_opened_again(
        bed: netns.Testbed, session: Any, tmp_path: Path) -> None:
    server = session.launch_server(["epoll", "--host", bed.server_address, "--port", "0"],
                                   tmp_path / "out", tmp_path / "err")
    server.wait_ready(15.0)
    os.kill(int(session.server.hello["pid"]), signal.SIGKILL)  # the gateway's python
    gone_by = time.monotonic() + 10
    while server.alive() and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not server.alive()
    assert "server host server" in (server.lost or "")
    assert server.stop(1.0).killed
    while pids_in(bed.server_ns) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert pids_in(bed.server_ns) == set(), "the model outlived its host's agent"
    again = session.launch_server(["epoll", "--host", bed.server_address, "--port", "0"],
                                  tmp_path / "out2", tmp_path / "err2")
    assert again.wait_ready(15.0)[0] == bed.server_address
    assert again.stop(3.0).returncode == 0


@needs_namespaces
def test_a_host_that_cannot_be_reached_is_named(bed: netns.Testbed, tmp_path: Path) -> None:
    from bench.hosts.session import HostError, HostsSession

    path = tmp_path / "hosts.toml"
    path.write_text(bed.hosts_toml(PYTHON).replace(bed.load_ns[1], f"{bed.prefix}-missing"))
    hosts = HostsSession(load_hosts(path))
    with pytest.raises(HostError, match="load host load2 .*cannot start its gateway"):
        hosts.open()
    assert all(host.gateway is None for host in hosts.hosts)  # the others were closed too


@needs_namespaces
def test_a_host_without_the_dependencies_gets_the_code_shipped_and_is_refused_by_name(
        bed: netns.Testbed, tmp_path: Path) -> None:
    """A bare venv's python imports no concbench: the code is shipped there with RSync, then
    the missing modules are named, and the shipped folder is removed with the session."""
    from bench.hosts.session import HostError, HostsSession

    bare = tmp_path / "bare"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    path = tmp_path / "hosts.toml"
    path.write_text(bed.hosts_toml(PYTHON).replace(  # elsewhere: '' on sys.path is the cwd
        f"{bed.load_ns[0]} {PYTHON}", f"{bed.load_ns[0]} {bare / 'bin' / 'python'}//chdir={bare}"))
    before = set(Path("/tmp").glob("concbench-code-*"))
    hosts = HostsSession(load_hosts(path))
    with pytest.raises(HostError, match=r"load host load1 .*missing module\(s\) hdrh, numpy, "
                                        r"psutil .*pip install hdrhistogram numpy psutil"):
        hosts.open()
    assert hosts.load[0].code == "shipped"
    assert set(Path("/tmp").glob("concbench-code-*")) == before


@needs_namespaces
def test_a_run_across_namespaces_records_each_host_and_ctrl_c_keeps_finished_trials(
        tmp_path: Path) -> None:
    with netns.Testbed(load_hosts=2) as own:  # its own: the module's gateways stay up
        hosts_path = tmp_path / "hosts.toml"
        hosts_path.write_text(own.hosts_toml(PYTHON, server_cpus=[0], load_cpus=[[1], [1]]))
        check_run_and_ctrl_c(own, hosts_path, tmp_path / "run")


def check_run_and_ctrl_c(bed: netns.Testbed, hosts_path: Path, out: Path) -> None:
    proc = subprocess.Popen([PYTHON, "-m", "bench", "run", "--scenario", "quick", "--servers",
                             "epoll,threaded", "--repeat", "3", "--hosts", str(hosts_path),
                             "--out", str(out), "--no-report"], cwd=REPO_ROOT,
                            env=child_env(REPO_ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and proc.poll() is None and not (
                out.joinpath("trials").is_dir() and any(out.joinpath("trials").iterdir())):
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does: the whole group
        output, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    text = output.decode(errors="replace")
    assert proc.returncode == 130, text
    records = [json.loads(p.read_text()) for p in sorted(out.joinpath("trials").iterdir())]
    assert records and all(r["status"] == "ok" for r in records), text
    first = records[0]
    assert first["placement"] == "hosts"
    assert "load1 and load2 are one machine" in " ".join(first["hosts"]["notes"])  # CPU 1
    assert "load1 and load2 are one machine" in text  # said as the run opened the hosts
    load = first["hosts"]["load"]
    assert [h["name"] for h in load] == ["load1", "load2"]
    assert sum(h["requests"] for h in load) == first["swarm"]["requests"] > 0
    assert first["hosts"]["server"]["name"] == "server"
    assert first["server"]["cpu_user_s"] + first["server"]["cpu_system_s"] > 0  # sampled there
    for namespace in bed.namespaces:
        assert pids_in(namespace) == set(), f"{namespace} still runs something"
