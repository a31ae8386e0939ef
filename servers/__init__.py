"""Server models: one concurrency model per module, all speaking docs/protocol.md.

A model module defines:

- ``DESCRIPTION``: one line for ``--list -v`` and reports;
- ``serve(listener, options)``: serve on the already-listening socket until ``Shutdown``
  (raised by the launcher's SIGTERM/SIGINT handler) or until it returns;
- optionally ``add_arguments(parser)`` for model options, ``check(options)`` that raises
  ``SystemExit`` with a message for an impossible setting, ``unavailable()`` returning why
  the model cannot run here (or None), and ``listener_options(options)`` returning keyword
  arguments for ``servers._base.make_listener``;
- optionally ``CLIENTS_AT_ONCE: int``: how many clients the model serves at once with its
  default options, when that is bounded by design; connections past it are accepted but wait,
  unanswered, until a served client leaves (``iterative``: 1; ``threadpool``: its
  ``--threads``, 16). Absent means as many as connect (a model that turns the excess away,
  like ``select`` past FD_SETSIZE, does not queue it and declares nothing). Read it with
  ``clients_at_once(name)``; a load generator sizes its connections by it;
- optionally ``CONFORMANCE_XFAIL: dict[str, str]``: conformance test name (a function in
  tests/test_conformance.py) -> why this model cannot meet that rule, e.g. ``iterative``
  serves one client at a time. tests/conftest.py marks those tests ``xfail(strict=True)``
  for the model, so a model that starts passing one is noticed; a name that is not a test
  fails ``test_xfail_declarations_name_real_tests``.

Adding a model is one module plus one line in ``MODELS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# model name -> module (imported lazily, so an optional dependency only matters when used)
MODELS: dict[str, str] = {
    "threaded": "servers.threaded",
    "select": "servers.select_",
    "poll": "servers.poll",
    "epoll": "servers.epoll",
    "asyncio": "servers.asyncio_",
    "nonblocking": "servers.nonblocking",
    "native": "servers.native",
    "uvloop": "servers.uvloop_",
    "threadpool": "servers.threadpool",
    "reactor": "servers.reactor",
    "prefork": "servers.prefork",
    "gevent": "servers.gevent_",
    "iterative": "servers.iterative",
    "trio": "servers.trio_",
    "anyio": "servers.anyio_",
    "twisted": "servers.twisted_",
    "tornado": "servers.tornado_",
    "socketserver": "servers.socketserver_",
    "asyncio-threads": "servers.asyncio_threads",
    "subinterpreters": "servers.subinterpreters",
}


def load(name: str) -> ModuleType:
    """Import a model's module by model name."""
    try:
        module_name = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    return importlib.import_module(module_name)


def unavailable_reason(name: str) -> str | None:
    """Why model ``name`` cannot run on this machine, or None if it can."""
    try:
        module = load(name)
    except ImportError as error:
        return f"cannot import: {error}"
    check = getattr(module, "unavailable", None)
    return check() if check else None


def clients_at_once(name: str) -> int | None:
    """How many clients model ``name`` serves at once by design (its ``CLIENTS_AT_ONCE``).

    None: no bound, every connection is served as it comes.
    """
    return getattr(load(name), "CLIENTS_AT_ONCE", None)


def available_models() -> list[str]:
    """Names of the models that can run here, in registry order."""
    return [name for name in MODELS if unavailable_reason(name) is None]
