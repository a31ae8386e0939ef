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

# tests whose figures are timing or CPU and want the machine to themselves: marked ``serial``,
# so that ``make test`` runs them alone after the parallel part (pytest -n); a test may also
# carry the mark itself (test_out_of_descriptors_keeps_serving)
SERIAL_MODULES = frozenset({  # every test of these
    "test_swarm_timing.py",  # the swarm's send lag against its schedule
    "test_swarm_oracle.py",  # stalls seen by the open-loop recorder
    "test_littles_law.py",  # throughput x latency / in flight = 1, on a real swarm
    "test_calibration.py",  # loop rates per CPU
    "test_workloads.py",  # churn, slowloris and head-of-line effects, timed
    "test_validate.py",  # the freezer's share of a CPU
    "test_cost.py",  # valgrind runs; a rerun must confirm a flag, under the same load
    "test_zz_nothing_left.py",  # last: nothing left by the serial part either
})
SERIAL_TESTS = frozenset({  # single tests elsewhere
    "test_a_a_with_real_servers_passes",  # timing of two servers must not differ
    "test_p50_against_a_server_exactly_2ms_late",
    "test_open_loop_shows_a_freeze_that_closed_loop_hides",
    "test_open_loop_keeps_its_rate_and_reports_lag",
    "test_a_tbf_link_caps_a_large_payload_case_at_the_link_rate",
    "test_tbf_cap_limits_the_replies_to_one_load_host",
    "test_requests_waiting_for_a_busy_connection_are_not_the_clients_lateness",
    "test_a_swarm_that_hangs_or_fails_is_a_failed_trial",  # its kill and reap deadlines
    # the swarm's rate against the native client's (tests/test_swarm_speed.py; its Ctrl-C
    # test only waits, with deadlines of seconds, and runs in the parallel part)
    "test_short_run_writes_a_record_and_leaves_no_child",
    "test_without_the_swarm_the_native_client_runs_alone",
    # the server's CPU sampled at the window's two ends, to 10 ms (tests/test_swarm_service.py:
    # a parallel neighbour once made it 0.2775 s for 0.30); its other tests wait on deadlines
    # of seconds for a trial of 0.3 s, and run in the parallel part
    "test_trials_run_on_the_same_warm_workers",
})


# module-scoped fixtures grouped per model instead (_model_group): one shared server per model
PER_WORKER_FIXTURES = frozenset({"_shared_server", "server_spec"})
# modules whose tests share state outside pytest (the checkout's git worktrees: one test's
# "nothing left behind" sees another's base worktree): their tests go to one worker, in turn
ONE_WORKER_MODULES = frozenset({"test_regress.py"})


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """True if the test uses a module-scoped fixture (a small run, a report) that pytest-xdist
    would build again in every worker that gets one of the module's tests."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(definition.scope == "module"
               for name, definitions in info.name2fixturedefs.items()
               if name not in PER_WORKER_FIXTURES for definition in definitions)


def _model_group(item: pytest.Item) -> str | None:
    """``module/model`` for a test run once per model: the model's tests go to one worker,
    which starts the model's shared server once (spread over the workers, each worker that
    drew some of them started one of its own)."""
    spec = getattr(item, "callspec", None)
    spec = spec.params.get("server_spec") if spec is not None else None
    return f"{item.path.name}/{spec.id}" if isinstance(spec, ModelSpec) else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Under --dist loadgroup a grouped test's id carries its group (``test@group``), the only
    thing the scheduler reads. pytest-xdist 3.8 writes it to ``Node._nodeid``, which pytest
    9.2's structured ids ignore; and marks added after its hook group nothing. Either way the
    groups silently vanish (every worker builds the module fixtures again, test_regress's
    tests run side by side): stop rather than run so."""
    if getattr(node, "config", None) is None or node.config.getvalue("dist") != "loadgroup":
        return
    lost = [test_id for test_id in ids
            if test_id.split("::")[0].rsplit("/", 1)[-1] in ONE_WORKER_MODULES
            and "@" not in test_id]
    if lost:
        pytest.exit(f"--dist loadgroup: pytest-xdist did not group {lost[0]} (nor"
                    f" {len(lost) - 1} more): are the marks added first, and is pytest below 9.2"
                    " (pyproject.toml)?", 3)


# first: pytest-xdist's worker hook of the same name reads the xdist_group marks, and would
# otherwise run before this one and see none
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # with --dist loadgroup, one worker builds the fixture once, or runs the module in turn
        if _shares_a_module_fixture(item) or item.path.name in ONE_WORKER_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
        elif group := _model_group(item):
            item.add_marker(pytest.mark.xdist_group(group))
        name = getattr(item, "originalname", item.name)
        if item.path.name in SERIAL_MODULES or name in SERIAL_TESTS:
            item.add_marker(pytest.mark.serial)


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
