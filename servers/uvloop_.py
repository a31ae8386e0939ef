"""`uvloop`: the asyncio model's Protocol server, unchanged, on uvloop's libuv event loop.

Same ``SessionProtocol`` (or, with ``--api streams``, the same stream handler) as the
``asyncio`` model; only the loop differs, so the comparison isolates what the loop costs.
uvloop is an optional dependency: the model is listed only where it imports.
"""

from __future__ import annotations

import argparse
import socket

from servers import asyncio_
from servers._base import missing_library

DESCRIPTION = "the asyncio Protocol server on uvloop (libuv; --api protocol|streams)"


def unavailable() -> str | None:
    return missing_library("uvloop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    asyncio_.add_arguments(parser)


def serve(listener: socket.socket, options: argparse.Namespace) -> None:
    import uvloop

    asyncio_.run(listener, options.api, loop_factory=uvloop.new_event_loop)
