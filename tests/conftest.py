"""Shared fixtures.

Server models under test: a test that takes ``server_spec`` (directly or through ``server``
or ``fresh_server``) runs once per model variant, ``_helpers_server.model_specs()``: every
entry of ``servers.available_models()`` plus the option variants in
``_helpers_server.VARIANTS``. A model module may declare ``CONFORMANCE_XFAIL = {"test_name":
"reason"}`` for rules it cannot meet; those tests are marked ``xfail(strict=True)`` for it,
so a model that starts meeting a rule is noticed.

``server`` is one process per model and test module, shared by consecutive tests (started
again if a test killed it); ``fresh_server`` is a process of the test's own, for tests that
measure the process (memory, descriptors) or stop it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _helpers_server import ModelSpec, ServerProcess, SharedServer, model_specs, running_server

from bench import procs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_spec" not in metafunc.fixturenames:
        return
    test_name = metafunc.function.__name__
    params = []
    for spec in model_specs():
        reason = spec.xfail_reason(test_name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(spec, id=spec.id, marks=marks))
    metafunc.parametrize("server_spec", params, scope="module")  # groups tests by model


def _check_after_test(process: ServerProcess) -> None:
    """Rule 6 and the launch contract: still alive, nothing on stdout besides READY."""
    assert process.alive(), f"the server exited (status {process.proc.returncode})"
    extra = process.read_stdout()
    assert extra == b"", f"stdout after READY: {extra[:200]!r}"


@pytest.fixture(scope="module")
def _shared_server(server_spec: ModelSpec) -> Iterator[SharedServer]:
    shared = SharedServer(server_spec)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def server(_shared_server: SharedServer) -> Iterator[ServerProcess]:
    """The model under test, running; it must survive the test."""
    process = _shared_server.get()
    yield process
    _check_after_test(process)


@pytest.fixture
def fresh_server(server_spec: ModelSpec) -> Iterator[ServerProcess]:
    """A process of the model under test for this test alone; it must survive the test."""
    with running_server(server_spec.model, *server_spec.args) as process:
        yield process
        _check_after_test(process)


@pytest.fixture
def reaped() -> Iterator[None]:
    """Whatever a test starts through bench.procs is gone when it ends."""
    yield
    leftover = procs.live_children()
    procs.kill_all()
    assert leftover == []
