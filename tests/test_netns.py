"""The network-namespace testbed (bench.hosts.netns): hosts on this one machine.

Needs root and iproute2; skipped with the reason otherwise. This test process lives in the
root namespace, so it never opens a socket to a testbed address: every listener and client
runs inside a namespace through ``ip netns exec``. Every wait is bounded, every child reaped.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.hosts import netns

REASON = netns.available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"netns testbed: {REASON}")

PORT = 7000  # the namespaces are private: no port can clash with anything outside
WAIT = 10.0  # seconds any one child may take

# listener modes: "echo" replies with the bytes upper-cased and the peer's address;
# "source N" sends N bytes and closes
LISTENER = textwrap.dedent("""
    import socket, sys
    address, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    listener = socket.create_server((address, port))
    listener.settimeout(10)
    print("ready", flush=True)
    conn, peer = listener.accept()
    conn.settimeout(10)
    if mode[0] == "echo":
        data = conn.recv(64)
        conn.sendall(data.upper() + b" " + peer[0].encode())
    else:
        left, chunk = int(mode[1]), b"x" * 65536
        while left > 0:
            left -= conn.send(chunk[:left])
    conn.close()
""")

ECHO_CLIENT = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
        conn.sendall(b"ping")
        print(conn.recv(64).decode())
""")

SINK_CLIENT = textwrap.dedent("""
    import json, socket, sys, time
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as conn:
        start, total = time.monotonic(), 0
        while chunk := conn.recv(262144):
            total += len(chunk)
        elapsed = time.monotonic() - start
    print(json.dumps({"bytes": total, "seconds": elapsed}))
""")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=WAIT,
                          check=True).stdout


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=WAIT)


@contextmanager
def _listener(testbed: netns.Testbed, *mode: str) -> Iterator[subprocess.Popen[str]]:
    """A LISTENER inside the server namespace, yielded once it listens."""
    argv = [*testbed.exec_prefix(testbed.server_ns), sys.executable, "-c", LISTENER,
            testbed.server_address, str(PORT), *mode]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], WAIT)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"listener did not start: {line!r} {proc.poll()}"
        yield proc
        proc.wait(timeout=WAIT)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        _reap(proc)


def _client(testbed: netns.Testbed, ns: str, code: str) -> str:
    """Run a client script inside ``ns`` against the server address; its stdout."""
    argv = [*testbed.exec_prefix(ns), sys.executable, "-c", code, testbed.server_address,
            str(PORT)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def testbed() -> Iterator[netns.Testbed]:
    with netns.Testbed(load_hosts=2, prefix="cbt") as bed:
        yield bed


def test_namespaces_and_links_come_up(testbed: netns.Testbed) -> None:
    assert set(testbed.namespaces) <= set(netns.list_namespaces())
    assert re.fullmatch(r"cbt-[0-9a-f]{8}-server", testbed.server_ns)
    assert testbed.load_ns == [f"cbt-{testbed.token}-load1", f"cbt-{testbed.token}-load2"]
    subnet = ipaddress.IPv4Network(testbed.subnet)
    assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))
    assert testbed.server_address == str(subnet.network_address + 1)
    assert testbed.load_addresses == [str(subnet.network_address + i) for i in (2, 3)]
    for ns in testbed.namespaces:
        assert "LOWER_UP" in _ip("-n", ns, "-o", "link", "show", "lo")
    server = _ip("-n", testbed.server_ns, "-o", "-4", "addr", "show", "dev", "br0")
    assert f"{testbed.server_address}/24" in server
    ports = _ip("-n", testbed.server_ns, "-o", "link", "show", "master", "br0")
    assert re.findall(r"^\d+: (p\d+)@", ports, re.M) == ["p1", "p2"]
    for ns, address in zip(testbed.load_ns, testbed.load_addresses, strict=True):
        assert f"{address}/24" in _ip("-n", ns, "-o", "-4", "addr", "show", "dev", "eth0")
        assert "LOWER_UP" in _ip("-n", ns, "-o", "link", "show", "eth0")


def test_no_default_route_anywhere(testbed: netns.Testbed) -> None:
    for ns in testbed.namespaces:
        assert _ip("-n", ns, "route", "show", "default").strip() == ""
        assert _ip("-n", ns, "-6", "route", "show", "default").strip() == ""
        routes = [line.split()[0] for line in _ip("-n", ns, "-4", "route").splitlines()]
        assert routes == [testbed.subnet], f"{ns}: {routes}"


def test_root_namespace_has_nothing_of_it(testbed: netns.Testbed) -> None:
    subnet = ipaddress.IPv4Network(testbed.subnet)
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        address = ipaddress.IPv4Interface(line.split()[3]).ip
        assert address not in subnet, line
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        destination = line.split()[0]
        if destination[0].isdigit():  # not default, broadcast, local, ...
            network = ipaddress.IPv4Network(destination, strict=False)
            assert not network.overlaps(subnet), line
        assert testbed.subnet.rsplit(".", 1)[0] + "." not in line, line
    links = _ip("-o", "link", "show")
    assert testbed.token not in links  # no veth end in the root namespace, no peer link to ours


def test_tcp_from_load_hosts_to_server(testbed: netns.Testbed) -> None:
    for ns, address in zip(testbed.load_ns, testbed.load_addresses, strict=True):
        with _listener(testbed, "echo"):
            reply = _client(testbed, ns, ECHO_CLIENT)
        assert reply.split() == ["PING", address]


def test_execnet_gateway_runs_inside_the_namespace(testbed: netns.Testbed) -> None:
    execnet = pytest.importorskip("execnet")
    hosts = tomllib.loads(testbed.hosts_toml(server_cpus=[0], load_cpus=[[1], [1]], workers=2))
    assert hosts["server"]["address"] == testbed.server_address
    assert hosts["server"]["cpus"] == [0]
    assert [load["workers"] for load in hosts["load"]] == [2, 2]
    assert [load["cpus"] for load in hosts["load"]] == [[1], [1]]
    specs = [hosts["server"]["gateway"]] + [load["gateway"] for load in hosts["load"]]
    assert specs == [testbed.gateway_spec(ns) for ns in testbed.namespaces]
    expected = [["br0", "lo", "p1", "p2"], ["eth0", "lo"], ["eth0", "lo"]]
    for spec, interfaces in zip(specs, expected, strict=True):
        assert execnet.XSpec(spec).python.split()[:4] == ["ip", "netns", "exec", spec.split()[3]]
        group = execnet.Group()  # its terminate() also reaps the gateway's process
        gateway = group.makegateway(spec)
        try:
            channel = gateway.remote_exec(
                "import socket; channel.send(sorted(n for _, n in socket.if_nameindex()))"
            )
            assert channel.receive(timeout=WAIT) == interfaces
        finally:
            group.terminate(timeout=WAIT)


def test_close_removes_everything_and_kills_what_runs_inside() -> None:
    bed = netns.Testbed(load_hosts=1, prefix="cbt")
    marker = netns.MARKER_DIR / bed.token
    assert marker.exists()
    sleeper = subprocess.Popen([*bed.exec_prefix(bed.load_ns[0]), "sleep", "60"])
    try:
        deadline = time.monotonic() + WAIT
        while not netns.namespace_pids(bed.load_ns[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        bed.close()
        assert sleeper.wait(timeout=WAIT) != 0
    finally:
        _reap_plain(sleeper)
    assert not set(bed.namespaces) & set(netns.list_namespaces())
    assert not marker.exists() and bed.closed
    bed.close()  # idempotent


def test_close_runs_when_the_with_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), netns.Testbed(prefix="cbt") as bed:
        names = bed.namespaces
        raise RuntimeError("boom")
    assert not set(names) & set(netns.list_namespaces())


def _reap_plain(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=WAIT)


OWNER = textwrap.dedent("""
    import os, sys
    from bench.hosts.netns import Testbed
    bed = Testbed(load_hosts=1, prefix=sys.argv[1])
    print(bed.token, flush=True)
    if sys.argv[2] == "crash":
        os._exit(0)  # no atexit: the namespaces stay behind
    if sys.argv[2] == "exit":
        sys.exit(0)  # left open: the atexit hook closes it
    sys.stdin.read()  # alive until the test closes our stdin
    bed.close()
""")


def test_sweep_stale_removes_dead_owners_only() -> None:
    prefix = f"cs{secrets.token_hex(3)}"  # this run's own: no other testbed sweeps it
    # the live owner first: each new testbed sweeps, and the crashed one must not be swept yet
    alive = subprocess.Popen([sys.executable, "-c", OWNER, prefix, "stay"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    unmarked = f"{prefix}-{secrets.token_hex(4)}-server"  # matches the pattern, has no marker
    _ip("netns", "add", unmarked)
    try:
        assert alive.stdout is not None
        ready, _, _ = select.select([alive.stdout], [], [], WAIT)
        live_token = alive.stdout.readline().strip() if ready else ""
        assert live_token, "the live owner did not start"
        crashed = subprocess.run([sys.executable, "-c", OWNER, prefix, "crash"],
                                 capture_output=True, text=True, timeout=WAIT)
        assert crashed.returncode == 0, crashed.stderr
        dead_token = crashed.stdout.strip()
        dead = {f"{prefix}-{dead_token}-server", f"{prefix}-{dead_token}-load1"}
        live = {f"{prefix}-{live_token}-server", f"{prefix}-{live_token}-load1"}
        assert dead | live <= set(netns.list_namespaces())
        marker = json.loads((netns.MARKER_DIR / dead_token).read_text())
        assert marker["prefix"] == prefix and set(marker["namespaces"]) == dead

        assert set(netns.sweep_stale(prefix)) == dead
        left = set(netns.list_namespaces())
        assert not dead & left and live <= left and unmarked in left
        assert not (netns.MARKER_DIR / dead_token).exists()
        assert (netns.MARKER_DIR / live_token).exists()
        assert netns.sweep_stale(prefix) == []
        alive.communicate(timeout=WAIT)  # closes stdin: the owner closes its testbed
        assert alive.returncode == 0
        assert not live & set(netns.list_namespaces())
    finally:
        if alive.poll() is None:
            alive.kill()
        alive.communicate(timeout=WAIT)
        _ip("netns", "delete", unmarked)
        netns.sweep_stale(prefix)  # whatever a failed assertion left


def test_atexit_closes_a_testbed_left_open() -> None:
    done = subprocess.run([sys.executable, "-c", OWNER, "cbt", "exit"], capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert not [ns for ns in netns.list_namespaces() if token in ns]
    assert not (netns.MARKER_DIR / token).exists()


def test_command_line_up_writes_hosts_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    argv = [sys.executable, "-m", "bench.hosts.netns", "up", "--load-hosts", "1", "--prefix",
            "cbt", "--hosts-file", str(hosts), "--server-cpus", "0", "--load-cpus", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        while not hosts.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hosts.exists(), f"no hosts file (exit {proc.poll()})"
        spec = tomllib.loads(hosts.read_text())
        server_ns = spec["server"]["gateway"].split()[3]
        load_ns = spec["load"][0]["gateway"].split()[3]
        assert spec["server"]["cpus"] == [0] and spec["load"][0]["cpus"] == [1]
        assert {server_ns, load_ns} <= set(netns.list_namespaces())
        proc.terminate()
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
        assert tomllib.loads(out) == spec
        assert not {server_ns, load_ns} & set(netns.list_namespaces())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def _transfer(testbed: netns.Testbed, size: int) -> float:
    """Mbit/s of ``size`` bytes sent by the server namespace to load1."""
    with _listener(testbed, "source", str(size)):
        result = json.loads(_client(testbed, testbed.load_ns[0], SINK_CLIENT))
    assert result["bytes"] == size
    return result["bytes"] * 8 / result["seconds"] / 1e6


def test_tbf_cap_limits_the_replies_to_one_load_host(testbed: netns.Testbed) -> None:
    if not shutil.which("tc"):
        pytest.skip("tc (iproute2) is not on PATH")
    size, rate = 4 * 1024 * 1024, 20.0
    uncapped = _transfer(testbed, size)
    assert testbed.cap("load1", rate) == "p1"
    shown = _ip("netns", "exec", testbed.server_ns, "tc", "qdisc", "show", "dev", "p1")
    assert "tbf" in shown and "rate 20Mbit" in shown, shown
    assert " tbf " not in testbed.qdisc("load2")
    capped = _transfer(testbed, size)
    testbed.uncap("load1")
    testbed.uncap("load1")  # nothing left to remove
    assert " tbf " not in testbed.qdisc("load1")
    print(f"\ntbf cap {rate:g} Mbit/s: measured {capped:.1f} Mbit/s, uncapped {uncapped:.0f}")
    assert rate / 4 < capped < 2 * rate
    assert uncapped > 10 * rate


def test_bad_arguments_are_refused(testbed: netns.Testbed) -> None:
    with pytest.raises(ValueError, match="not a load host"):
        testbed.cap("server", 10)
    with pytest.raises(ValueError, match="not a namespace"):
        testbed.exec_prefix("elsewhere")
    with pytest.raises(ValueError, match="prefix"):
        netns.Testbed(prefix="Bad-Prefix")
    assert os.path.isabs(testbed.gateway_spec(testbed.server_ns).split()[-1])
