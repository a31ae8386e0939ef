"""The hosts file (TOML): which execnet gateway serves, which ones load, on which CPUs.

```toml
[server]
gateway = "ssh=bench@10.0.0.5//python=/opt/concbench/.venv/bin/python"
address = "10.0.0.5"        # what the server binds and the swarm targets
cpus = [0, 1, 2, 3]         # optional: the server's CPUs there
[[load]]
gateway = "ssh=bench@10.0.0.6//python=/opt/concbench/.venv/bin/python"
workers = 4                 # optional: swarm processes there (default: one per CPU there)
cpus = [0, 1, 2, 3]         # optional: the swarm's CPUs there
```

Every host may also say ``name`` (for records and messages; default ``server``, ``load1``...)
and ``code``: ``auto`` (the default: use the project the host's python imports when it is the
same code as here, byte for byte, else ship it), ``installed`` (use it, or fail) or ``ship``
(always copy the packages there with ``execnet.RSync``).
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CODE_CHOICES = ("auto", "installed", "ship")
SERVER_KEYS = {"name", "gateway", "address", "cpus", "code"}
LOAD_KEYS = {"name", "gateway", "workers", "cpus", "code"}


class HostsFileError(Exception):
    """The hosts file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class HostSpec:
    """One host of the file: its role's table."""

    name: str
    role: str  # "server" or "load"
    gateway: str  # an execnet gateway spec: popen//python=..., ssh=user@host//python=...
    cpus: tuple[int, ...] | None = None
    workers: int | None = None  # load hosts: swarm worker processes there
    code: str = "auto"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "gateway": self.gateway,
                "cpus": list(self.cpus) if self.cpus is not None else None,
                "workers": self.workers, "code": self.code}


@dataclass(frozen=True)
class HostsFile:
    path: Path
    server: HostSpec
    address: str  # what the server binds and the swarm targets
    load: tuple[HostSpec, ...]

    @property
    def hosts(self) -> tuple[HostSpec, ...]:
        return (self.server, *self.load)


def load_hosts(path: Path) -> HostsFile:
    """Read and check a hosts file (HostsFileError saying what is wrong where)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise HostsFileError(f"{path}: cannot read it: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise HostsFileError(f"{path}: not valid TOML: {error}") from None
    return parse_hosts(data, path)


def parse_hosts(data: dict[str, Any], path: Path = Path("<hosts>")) -> HostsFile:
    unknown = set(data) - {"server", "load"}
    if unknown:
        raise HostsFileError(f"{path}: unknown table(s) {', '.join(sorted(unknown))} (a hosts "
                             "file has [server] and [[load]])")
    table = data.get("server")
    if not isinstance(table, dict):
        raise HostsFileError(f"{path}: a [server] table is required")
    server = _host(table, "server", "server", SERVER_KEYS, path)
    address = table.get("address")
    if not isinstance(address, str) or not address.strip():
        raise HostsFileError(f"{path}: [server] address is required: the address the server "
                             "binds and the swarm targets")
    _check_address(address, path)
    loads = data.get("load")
    if not isinstance(loads, list) or not loads or not all(isinstance(t, dict) for t in loads):
        raise HostsFileError(f"{path}: at least one [[load]] table is required")
    load = tuple(_host(t, "load", f"load{i}", LOAD_KEYS, path) for i, t in enumerate(loads, 1))
    names = [host.name for host in (server, *load)]
    if len(set(names)) != len(names):
        raise HostsFileError(f"{path}: host names must differ: {', '.join(names)}")
    return HostsFile(path, server, address.strip(), load)


def _host(table: dict[str, Any], role: str, default_name: str, keys: set[str],
          path: Path) -> HostSpec:
    where = f"{path}: [{role}]" if role == "server" else f"{path}: [[load]] {default_name}"
    unknown = set(table) - keys
    if unknown:
        raise HostsFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(keys))})")
    gateway = table.get("gateway")
    if not isinstance(gateway, str) or not gateway.strip():
        raise HostsFileError(f"{where}: gateway is required (an execnet spec such as "
                             "'popen//python=python3' or 'ssh=user@host//python=PATH')")
    name = table.get("name", default_name)
    if not isinstance(name, str) or not name.isidentifier():
        raise HostsFileError(f"{where}: name must be a short identifier, not {name!r}")
    code = table.get("code", "auto")
    if code not in CODE_CHOICES:
        raise HostsFileError(f"{where}: code is one of {', '.join(CODE_CHOICES)}, not {code!r}")
    workers = table.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                or workers < 1):
        raise HostsFileError(f"{where}: workers must be a positive integer")
    return HostSpec(name, role, gateway.strip(), _cpus(table.get("cpus"), where), workers, code)


def _cpus(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(cpu, int) and not isinstance(cpu, bool) and cpu >= 0 for cpu in value):
        raise HostsFileError(f"{where}: cpus must be a list of CPU numbers, such as [0, 1]")
    return tuple(value)


def _check_address(address: str, path: Path) -> None:
    """An IP literal or a host name; a wildcard cannot be targeted."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        if not all(part.replace("-", "").isalnum() for part in address.strip().split(".")):
            raise HostsFileError(f"{path}: [server] address {address!r} is neither an IP "
                                 "address nor a host name") from None
        return
    if parsed.is_unspecified:
        raise HostsFileError(f"{path}: [server] address {address!r} is a wildcard: give the "
                             "address the load hosts reach the server at")
