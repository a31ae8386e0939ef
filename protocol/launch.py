"""The launch contract's process side (docs/protocol.md, "Launch contract"), for both ends of it.

A model prints ``READY <host> <port>`` once it listens; whoever started it reads that line
within a deadline (``parse_ready``, ``ReadyWatch``). Servers, the swarm and the harness all
hold thousands of sockets, so each lifts its descriptor limit the same way
(``raise_fd_limit``), and records a process hands back are written so that a reader never sees
half of one (``atomic_write_json``). No sockets here, and nothing that imports ``bench``.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

READY_WORD = b"READY"


class BadReady(ValueError):
    """A line that starts like the READY line but does not follow its form."""


def ready_line(host: str, port: int) -> str:
    """The one line a model prints on standard output once it listens."""
    return f"READY {host} {port}\n"


def parse_ready(line: bytes) -> tuple[str, int] | None:
    """``(host, port)`` from a complete READY line; None for any other line.

    ``BadReady`` when the line starts with ``READY`` but is malformed (a contract breach that
    should fail loudly, not wait for a timeout).
    """
    if not line.startswith(READY_WORD + b" "):
        return None
    fields = line.split()
    if len(fields) != 3 or not fields[2].isdigit() or not line.endswith(b"\n"):
        raise BadReady(f"malformed READY line: {line!r}")
    return fields[1].decode(), int(fields[2])


class ReadyWatch:
    """Incremental search for the READY line in a server's standard output, fed in chunks.

    ``extra`` keeps whatever else the server printed on stdout (the contract allows nothing).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.address: tuple[str, int] | None = None
        self.extra = b""

    def feed(self, data: bytes) -> tuple[str, int] | None:
        """Take more stdout bytes; the address once the READY line is complete."""
        if self.address is not None:
            self.extra += data
            return self.address
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            found = parse_ready(line + b"\n")
            if found is not None:
                self.address = found
                self.extra += self._buffer
                self._buffer = b""
                return found
            self.extra += line + b"\n"
        return None


def raise_fd_limit(needed: int = 0) -> tuple[int, int, str | None]:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit where allowed (children
    inherit it): ``(soft, hard)`` as they now are, and a sentence when the soft limit could
    not be raised, or is still below ``needed`` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    problem = None
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            problem = f"could not raise the soft limit {soft} to the hard limit {hard}: {error}"
    if problem is None and needed > soft:
        problem = f"{needed:,} descriptors needed, but the limit is {soft:,} (hard {hard:,})"
    return soft, hard, problem


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def file_mode() -> int:
    """The mode open() gives a new file (0o666 less the umask), which mkstemp's 0o600 is not:
    a record must be as readable as the report beside it. The umask is read from
    /proc/self/status (setting it to read it back would race other threads); 0o644 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def atomic_write_json(path: Path, data: Any, *, indent: int = 1) -> None:
    """Write ``data`` (through ``json_safe``; other objects as ``str``) to a temporary file in
    ``path``'s folder, then ``os.replace`` it into place: a reader, or a crash, never leaves a
    partial record."""
    # imported here: every server imports this module at start-up and never writes a record
    import json
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(json_safe(data), handle, indent=indent, allow_nan=False, default=str)
            handle.write("\n")
            os.fchmod(handle.fileno(), file_mode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
