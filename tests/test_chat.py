"""``python -m clients chat``, driven over a pipe against a real model (``servers epoll``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from _helpers_server import ServerProcess, running_server

from protocol import work


@pytest.fixture(scope="module")
def epoll_server() -> Iterator[ServerProcess]:
    with running_server("epoll") as server:
        yield server


def chat(server: ServerProcess, typed: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients", "chat", "--target", f"{server.host}:{server.port}"],
        input=typed, capture_output=True, text=True, timeout=timeout)


def test_echo_work_sleep_and_end(epoll_server: ServerProcess) -> None:
    done = chat(epoll_server, "hello, server\nwork 1000\nsleep 20000\nend\nnot sent\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello, server"
    assert lines[1] == f"work 1000 = {work(b'', 1000)}"
    slept = re.fullmatch(r"slept 20000 us \(answer after ([\d.]+) ms\)", lines[2])
    assert slept is not None and float(slept[1]) >= 20.0
    assert lines[3:] == ["bye"]  # nothing after `end` goes out


def test_end_of_input_says_bye_and_exits_cleanly(epoll_server: ServerProcess) -> None:
    done = chat(epoll_server, "one\n\ntwo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["one", "", "two"]


def test_bad_commands_are_explained_and_the_conversation_goes_on(
        epoll_server: ServerProcess) -> None:
    done = chat(epoll_server, "work lots\nsleep 99999999\nwork 0\n")
    assert done.returncode == 0, done.stderr
    assert "usage: work N" in done.stderr and "usage: sleep N" in done.stderr
    assert done.stdout.splitlines() == [f"work 0 = {work(b'', 0)}"]


def test_an_unreachable_server_is_a_clear_error() -> None:
    done = subprocess.run([sys.executable, "-m", "clients", "chat", "--target", "127.0.0.1:1"],
                          input="hello\n", capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert "cannot connect to 127.0.0.1:1" in done.stderr
