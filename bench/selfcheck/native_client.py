"""The minimal native load client (``client.c``): the yardstick for the Python swarm.

A closed-loop C epoll client (N connections, P ECHO requests in flight on each, every byte
checked), compiled on demand into ``bench/selfcheck/build/`` like the ``native`` server model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from servers.native import BuildError, build

SOURCE = Path(__file__).with_name("client.c")

__all__ = ["SOURCE", "BuildError", "build_client", "client_command", "parse_result"]


def build_client() -> Path:
    """The native client's executable, compiled if missing or older than its source."""
    return build(SOURCE)


def client_command(binary: Path, host: str, port: int, *, connections: int = 50,
                   pipeline: int = 1, payload: int = 64, duration: float = 5.0,
                   warmup: float = 1.0, timeout: float = 5.0) -> list[str]:
    """The command line that runs the native client once."""
    return [str(binary), "--host", host, "--port", str(port),
            "--connections", str(connections), "--pipeline", str(pipeline),
            "--payload", str(payload), "--duration", str(duration),
            "--warmup", str(warmup), "--timeout", str(timeout)]


def parse_result(stdout: str) -> dict[str, Any]:
    """The client's one JSON line; ``ValueError`` if it printed none."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"the native client printed no result: {stdout[-500:]!r}")


def run_client(host: str, port: int, **options: Any) -> dict[str, Any]:
    """Run the native client to completion and return its result record."""
    command = client_command(build_client(), host, port, **options)
    limit = options.get("warmup", 1.0) + options.get("duration", 5.0) + 30.0
    completed = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                               check=False)
    result = parse_result(completed.stdout)
    result["exit_status"] = completed.returncode
    return result
