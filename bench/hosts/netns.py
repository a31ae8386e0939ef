"""Network namespaces that stand in for real hosts on this one machine.

A :class:`Testbed` makes a server namespace and N load namespaces, each with ``lo`` up,
linked on a random /24 inside 198.18.0.0/15 (RFC 2544's benchmarking range) that exists
only inside them: a bridge ``br0`` in the server namespace holds the address ``.1`` and one
veth port ``p<i>`` per load host, whose peer ``eth0`` sits in load namespace ``i`` with the
address ``.<i+1>``. Each veth pair is created with both ends already in their namespaces,
so nothing ever appears in the root namespace, and no namespace has a default route.

Gateways into a namespace are ``popen//python=ip netns exec NS PYTHON`` (execnet splits the
``python=`` value with shlex). :meth:`Testbed.cap` puts a tbf qdisc on the egress of the
server-side port towards one load host: the server's replies to that host are rate-capped.

Cleanup: :meth:`Testbed.close` (idempotent, resumable; run by ``with`` also on exceptions,
and by an ``atexit`` hook) kills what still runs inside the namespaces, then deletes them
(deleting a namespace deletes its veths). For runs that die without atexit (SIGKILL),
every namespace's owner is recorded in a marker file ``/run/concbench-netns/<token>`` (pid
and process start time), and :func:`sweep_stale` (run before each new testbed) deletes the
namespaces ``<prefix>-<token>-...`` whose marker names a dead owner, and nothing else.

Command line (as root)::

    python -m bench.hosts.netns up --load-hosts 2 --hosts-file PATH   # until Ctrl-C/SIGTERM
    python -m bench.hosts.netns sweep [--prefix cb]
    python -m bench.hosts.netns check                                  # exit 1 with the reason
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

MARKER_DIR = Path("/run/concbench-netns")
BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544
BRIDGE = "br0"
LOAD_IFACE = "eth0"
TIMEOUT = 10.0  # seconds, for any one ip/tc command
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_LIVE: dict[int, Testbed] = {}  # id -> testbed, for the atexit hook
_LIVE_LOCK = threading.Lock()


class NetnsError(RuntimeError):
    """An ip/tc command failed, timed out, or the testbed is not as it must be."""


def _run(args: Sequence[str], timeout: float = TIMEOUT, check: bool = True) -> str:
    """Run a command, return its stdout; raise NetnsError naming it and its stderr."""
    command = shlex.join(args)
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as error:
        raise NetnsError(f"`{command}` timed out after {timeout:g} s") from error
    except OSError as error:
        raise NetnsError(f"`{command}` could not start: {error}") from error
    if check and done.returncode != 0:
        stderr = done.stderr.strip() or "(no stderr)"
        raise NetnsError(f"`{command}` failed (exit {done.returncode}): {stderr}")
    return done.stdout


def list_namespaces() -> list[str]:
    """Names of the namespaces under /run/netns (``ip netns list``)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    """Processes running inside namespace ``ns`` (``ip netns pids``)."""
    return [int(word) for word in _run(["ip", "netns", "pids", ns]).split()]


def available() -> str | None:
    """None if this process can make namespaces, veths and bridges; else why not (one line)."""
    if sys.platform != "linux":
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"network namespaces need root (euid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not on PATH"
    probe = f"cbprobe-{secrets.token_hex(4)}"
    try:
        _run(["ip", "netns", "add", probe])
    except NetnsError as error:
        return str(error)
    try:
        _run(["ip", "-n", probe, "link", "add", "b0", "type", "bridge"])
        _run(["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
    except NetnsError as error:
        return str(error)
    finally:
        with contextlib.suppress(NetnsError):
            _run(["ip", "netns", "delete", probe])
    return None


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counting from the pid


def _owner_alive(marker: dict[str, object]) -> bool:
    pid, start = marker.get("pid"), marker.get("start")
    return isinstance(pid, int) and _start_time(pid) == start


def _name_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-(?P<token>[0-9a-f]{{8}})-(server|load[0-9]+)$")


def _kill_inside(namespaces: Sequence[str], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL, every process inside these namespaces (never this one)."""
    existing = set(list_namespaces())
    live = [ns for ns in namespaces if ns in existing]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = {pid for ns in live for pid in namespace_pids(ns)} - {os.getpid()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(namespace_pids(ns) for ns in live):
                return
            time.sleep(0.05)
    raise NetnsError(f"processes still inside {live} after SIGKILL")


def _delete_namespaces(namespaces: Sequence[str]) -> None:
    _kill_inside(namespaces)
    existing = set(list_namespaces())
    for ns in namespaces:
        if ns in existing:
            _run(["ip", "netns", "delete", ns])


def sweep_stale(prefix: str = "cb") -> list[str]:
    """Delete namespaces left by dead owners (per their marker files); return their names.

    Only namespaces named ``<prefix>-<8 hex>-(server|loadN)`` whose token has a marker file
    recording this prefix and an owner process that is gone are deleted; a namespace
    without a marker, or whose owner lives, is kept.
    """
    if not MARKER_DIR.is_dir():
        return []
    pattern = _name_re(prefix)
    by_token: dict[str, list[str]] = {}
    for ns in list_namespaces():
        match = pattern.match(ns)
        if match:
            by_token.setdefault(match["token"], []).append(ns)
    removed: list[str] = []
    for path in sorted(MARKER_DIR.iterdir()):
        if not re.fullmatch(r"[0-9a-f]{8}", path.name):
            continue
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours to judge
        if not isinstance(marker, dict) or marker.get("prefix") != prefix or _owner_alive(marker):
            continue
        stale = by_token.get(path.name, [])
        _delete_namespaces(stale)
        removed.extend(stale)
        path.unlink(missing_ok=True)
    return removed


def _used_subnets() -> set[ipaddress.IPv4Network]:
    """/24s of the benchmarking range that the root namespace or a live testbed uses."""
    used: set[ipaddress.IPv4Network] = set()
    text = _run(["ip", "-4", "-o", "addr", "show"])
    text += _run(["ip", "-4", "route", "show", "table", "all"])
    for word in re.findall(r"\b198\.1[89]\.\d+\.\d+(?:/\d+)?", text):
        network = ipaddress.IPv4Network(word, strict=False)
        used.update(network.subnets(new_prefix=24) if network.prefixlen < 24 else
                    [network.supernet(new_prefix=24)])
    if MARKER_DIR.is_dir():
        for path in MARKER_DIR.iterdir():
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                used.add(ipaddress.IPv4Network(json.loads(path.read_text())["subnet"]))
    return used


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string with ASCII escapes is a TOML basic string


def _toml_ints(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


class Testbed:
    """A server namespace and ``load_hosts`` load namespaces on a private /24 (see module)."""

    def __init__(self, load_hosts: int = 2, prefix: str = "cb", sweep: bool = True) -> None:
        if not 1 <= load_hosts <= 200:
            raise ValueError(f"load_hosts must be 1..200, not {load_hosts}")
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"prefix must match {_PREFIX_RE.pattern}, not {prefix!r}")
        self.prefix = prefix
        self.token = secrets.token_hex(4)
        base = f"{prefix}-{self.token}"
        self.server_ns = f"{base}-server"
        self.load_ns = [f"{base}-load{i}" for i in range(1, load_hosts + 1)]
        self._lock = threading.RLock()
        self._remaining: list[str] = []  # namespaces made and not yet deleted
        self._marker = MARKER_DIR / self.token
        self._closed = False
        if sweep:
            sweep_stale(prefix)
        used = _used_subnets()
        free = [s for s in BENCH_RANGE.subnets(new_prefix=24) if s not in used]
        if not free:
            raise NetnsError(f"no free /24 left in {BENCH_RANGE}")
        network = random.choice(free)
        hosts = list(network.hosts())
        self.subnet = str(network)
        self.server_address = str(hosts[0])
        self.load_addresses = [str(hosts[i]) for i in range(1, load_hosts + 1)]
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # --- setup -------------------------------------------------------------------------

    def _write_marker(self) -> None:
        MARKER_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        marker = {
            "pid": os.getpid(),
            "start": _start_time(os.getpid()),
            "prefix": self.prefix,
            "subnet": self.subnet,
            "namespaces": [self.server_ns, *self.load_ns],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        partial = self._marker.with_suffix(".tmp")
        partial.write_text(json.dumps(marker) + "\n")
        partial.replace(self._marker)

    def _ip(self, ns: str, *args: str) -> str:
        return _run(["ip", "-n", ns, *args])

    def _setup(self) -> None:
        self._write_marker()  # before any namespace, so a crash mid-setup is still swept
        prefixlen = ipaddress.IPv4Network(self.subnet).prefixlen
        for ns in [self.server_ns, *self.load_ns]:
            _run(["ip", "netns", "add", ns])
            self._remaining.append(ns)
            self._ip(ns, "link", "set", "lo", "up")
        server = self.server_ns
        self._ip(server, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                 "forward_delay", "0")
        self._ip(server, "addr", "add", f"{self.server_address}/{prefixlen}", "dev", BRIDGE)
        self._ip(server, "link", "set", BRIDGE, "up")
        for i, (ns, address) in enumerate(zip(self.load_ns, self.load_addresses, strict=True), 1):
            port = f"p{i}"
            _run(["ip", "link", "add", port, "netns", server, "type", "veth",
                  "peer", "name", LOAD_IFACE, "netns", ns])
            self._ip(server, "link", "set", port, "master", BRIDGE)
            self._ip(server, "link", "set", port, "up")
            self._ip(ns, "addr", "add", f"{address}/{prefixlen}", "dev", LOAD_IFACE)
            self._ip(ns, "link", "set", LOAD_IFACE, "up")
        self._wait_links()
        for ns in [server, *self.load_ns]:
            for family in ("-4", "-6"):
                routes = self._ip(ns, family, "route", "show", "default").strip()
                if routes:
                    raise NetnsError(f"namespace {ns} has a default route: {routes}")

    def _wait_links(self, timeout: float = 5.0) -> None:
        """Wait until every veth end and the bridge report carrier (LOWER_UP)."""
        links = [(self.server_ns, BRIDGE)]
        links += [(self.server_ns, f"p{i}") for i in range(1, len(self.load_ns) + 1)]
        links += [(ns, LOAD_IFACE) for ns in self.load_ns]
        deadline = time.monotonic() + timeout
        while True:
            down = [(ns, dev) for ns, dev in links
                    if "LOWER_UP" not in self._ip(ns, "-o", "link", "show", "dev", dev)]
            if not down:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"links without carrier after {timeout:g} s: {down}")
            time.sleep(0.02)

    # --- use ---------------------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of the testbed, the server's first."""
        return [self.server_ns, *self.load_ns]

    def exec_prefix(self, ns: str) -> list[str]:
        """The argv prefix that runs a command inside namespace ``ns``."""
        self._check_ns(ns)
        return ["ip", "netns", "exec", ns]

    def gateway_spec(self, ns: str, python: str = sys.executable) -> str:
        """The execnet spec of a Python interpreter inside ``ns``.

        execnet shlex-splits the ``python=`` value, so the interpreter path is shell-quoted;
        an XSpec value cannot contain ``//``.
        """
        command = shlex.join([*self.exec_prefix(ns), os.path.normpath(python)])
        if "//" in command:
            raise ValueError(f"an execnet spec value cannot contain '//': {command!r}")
        return f"popen//python={command}"

    def port(self, ns_or_role: str) -> str:
        """The server-side veth port towards a load host (its namespace or ``loadN``)."""
        for i, ns in enumerate(self.load_ns, 1):
            if ns_or_role in (ns, f"load{i}"):
                return f"p{i}"
        raise ValueError(f"not a load host of this testbed: {ns_or_role!r} (loads {self.load_ns})")

    def cap(self, ns_or_role: str, rate_mbit: float, burst_kbit: float | None = None,
            latency_ms: float = 50.0) -> str:
        """Cap the server's egress towards one load host with tbf; return the port capped.

        The default burst is 10 ms at the rate, at least 100 kbit (a few full frames).
        """
        if rate_mbit <= 0:
            raise ValueError(f"rate_mbit must be positive, not {rate_mbit}")
        burst = burst_kbit if burst_kbit is not None else max(100.0, rate_mbit * 10.0)
        port = self.port(ns_or_role)
        _run(["tc", "-n", self.server_ns, "qdisc", "replace", "dev", port, "root", "tbf",
              "rate", f"{rate_mbit:g}mbit", "burst", f"{burst:g}kbit",
              "latency", f"{latency_ms:g}ms"])
        return port

    def uncap(self, ns_or_role: str) -> None:
        """Remove a cap set by :meth:`cap` (nothing to do if there is none)."""
        port = self.port(ns_or_role)
        if " tbf " in self.qdisc(ns_or_role):
            _run(["tc", "-n", self.server_ns, "qdisc", "del", "dev", port, "root"])

    def qdisc(self, ns_or_role: str) -> str:
        """``tc qdisc show`` of the server-side port towards a load host."""
        return _run(["tc", "-n", self.server_ns, "qdisc", "show", "dev", self.port(ns_or_role)])

    def hosts_toml(self, python: str = sys.executable, server_cpus: Sequence[int] | None = None,
                   load_cpus: Sequence[Sequence[int]] | None = None, workers: int = 1) -> str:
        """A hosts file (TOML) for ``bench run --hosts``: the server and every load host.

        ``load_cpus`` holds one CPU list per load host.
        """
        if load_cpus is not None and len(load_cpus) != len(self.load_ns):
            raise ValueError(f"load_cpus has {len(load_cpus)} lists for {len(self.load_ns)} hosts")
        lines = [
            f"# network-namespace testbed {self.token} (subnet {self.subnet}), "
            "valid while it is up (bench.hosts.netns)",
            "[server]",
            f"gateway = {_toml_str(self.gateway_spec(self.server_ns, python))}",
            f"address = {_toml_str(self.server_address)}",
        ]
        if server_cpus is not None:
            lines.append(f"cpus = {_toml_ints(server_cpus)}")
        for i, ns in enumerate(self.load_ns):
            lines += ["", "[[load]]", f"gateway = {_toml_str(self.gateway_spec(ns, python))}",
                      f"workers = {int(workers)}"]
            if load_cpus is not None:
                lines.append(f"cpus = {_toml_ints(load_cpus[i])}")
        return "\n".join(lines) + "\n"

    def _check_ns(self, ns: str) -> None:
        if ns not in self.namespaces:
            raise ValueError(f"not a namespace of this testbed: {ns!r} ({self.namespaces})")

    # --- teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """Kill what runs inside the namespaces, delete them and the marker (idempotent)."""
        with self._lock:
            if self._closed:
                return
            _kill_inside(self._remaining)
            existing = set(list_namespaces())
            while self._remaining:
                ns = self._remaining[0]
                if ns in existing:
                    _run(["ip", "netns", "delete", ns])
                self._remaining.pop(0)
            self._marker.unlink(missing_ok=True)
            self._marker.with_suffix(".tmp").unlink(missing_ok=True)
            self._closed = True
            with _LIVE_LOCK:
                _LIVE.pop(id(self), None)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "up"
        return f"<Testbed {self.token} {self.subnet} {state}: {self.namespaces}>"


@atexit.register
def _close_all() -> None:
    """Close every testbed still up when the interpreter exits."""
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for testbed in live:
        try:
            testbed.close()
        except NetnsError as error:
            print(f"bench.hosts.netns: cleanup of {testbed.token} failed: {error}", file=sys.stderr)


# --- command line ----------------------------------------------------------------------


def _cpu_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a comma-separated CPU list: {text!r}") from error


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _up(args: argparse.Namespace) -> int:
    if args.load_cpus and len(args.load_cpus) not in (1, args.load_hosts):
        print(f"--load-cpus: give it once, or once per load host ({args.load_hosts})",
              file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)  # also when started with SIGINT ignored (a & job)
    try:
        with Testbed(load_hosts=args.load_hosts, prefix=args.prefix) as testbed:
            load_cpus = None
            if args.load_cpus:
                load_cpus = args.load_cpus * args.load_hosts if len(args.load_cpus) == 1 \
                    else args.load_cpus
            text = testbed.hosts_toml(args.python, args.server_cpus, load_cpus, args.workers)
            if args.hosts_file:
                path = Path(args.hosts_file)
                partial = path.with_name(path.name + ".tmp")
                partial.write_text(text)
                partial.replace(path)  # appears complete, once everything is up
            sys.stdout.write(text)
            sys.stdout.flush()
            print(f"testbed {testbed.token} up ({testbed.subnet}); Ctrl-C removes it",
                  file=sys.stderr, flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("testbed removed", file=sys.stderr)
        return 0
    except NetnsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.hosts.netns up|sweep|check``."""
    parser = argparse.ArgumentParser(prog="python -m bench.hosts.netns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="make a testbed, print its hosts TOML, stay up until Ctrl-C")
    up.add_argument("--load-hosts", type=int, default=2)
    up.add_argument("--hosts-file", help="also write the hosts TOML here")
    up.add_argument("--prefix", default="cb")
    up.add_argument("--python", default=sys.executable, help="interpreter in the namespaces")
    up.add_argument("--server-cpus", type=_cpu_list, help="e.g. 0 or 0,1")
    up.add_argument("--load-cpus", type=_cpu_list, action="append",
                    help="once for every load host, or once per load host in order")
    up.add_argument("--workers", type=int, default=1, help="swarm workers per load host")
    sweep = verbs.add_parser("sweep", help="delete namespaces left by dead runs")
    sweep.add_argument("--prefix", default="cb")
    verbs.add_parser("check", help="say whether namespaces can be made here")
    args = parser.parse_args(argv)
    if args.verb == "check":
        reason = available()
        print(reason or "network namespaces available")
        return 1 if reason else 0
    if args.verb == "sweep":
        try:
            removed = sweep_stale(args.prefix)
        except NetnsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print("\n".join(removed) if removed else "nothing stale")
        return 0
    reason = available()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    return _up(args)


if __name__ == "__main__":
    sys.exit(main())
