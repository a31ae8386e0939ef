"""A model started on a port another process already listens on refuses (exit 1, no READY),
the SO_REUSEPORT models included: they share a port only among their own listeners."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _helpers_server import running_server

from bench.launch import child_env

HOLDERS = ("prefork", "epoll")
LATECOMERS = ("prefork", "asyncio-threads", "epoll")


@pytest.mark.parametrize("holder", HOLDERS)
def test_a_second_model_on_a_taken_port_refuses(holder: str) -> None:
    with running_server(holder) as server:
        for model in LATECOMERS:
            done = subprocess.run([sys.executable, "-m", "servers", model, "--port",
                                   str(server.port)], capture_output=True, text=True,
                                  env=child_env(), timeout=30)
            assert done.returncode == 1, (model, done.stdout, done.stderr)
            assert "READY" not in done.stdout
            assert "Address already in use" in done.stderr
            assert server.alive()


def test_model_usage_has_no_stray_positional() -> None:
    done = subprocess.run([sys.executable, "-m", "servers", "epoll", "--help"],
                          capture_output=True, text=True, env=child_env(), timeout=30)
    usage = done.stdout.split("\n\n")[0]
    assert done.returncode == 0 and usage.startswith("usage: python -m servers epoll")
    assert "model" not in usage


def test_a_group_joins_its_own_port_and_a_newcomer_is_refused() -> None:
    from servers._base import make_listener

    first = make_listener("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    try:
        joined = make_listener("127.0.0.1", port, reuse_port=True, joining=True)
        joined.close()
        with pytest.raises(OSError, match="in use"):
            make_listener("127.0.0.1", port, reuse_port=True)
    finally:
        first.close()
