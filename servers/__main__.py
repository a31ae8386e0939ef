"""``python -m servers MODEL [--host H] [--port P] [model options]`` and ``--list``."""

from __future__ import annotations

import argparse
import sys

from protocol.launch import raise_fd_limit
from servers import MODELS, load, unavailable_reason
from servers._base import Shutdown, announce, install_shutdown_handlers, log, make_listener


def port_number(text: str) -> int:
    """argparse type for --port: an integer 0..65535 (0: any free port)."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {port}")
    return port


def list_models(verbose: bool) -> int:
    for name in MODELS:
        reason = unavailable_reason(name)
        if reason is None:
            if verbose:
                print(f"{name:12} {load(name).DESCRIPTION}")
            else:
                print(name)
        else:
            log(f"{name}: not available here ({reason})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = argparse.ArgumentParser(prog="python -m servers", add_help=False)
    first.add_argument("--list", action="store_true")
    first.add_argument("-v", "--verbose", action="store_true")
    first.add_argument("-h", "--help", action="store_true")
    first.add_argument("model", nargs="?")
    known, _ = first.parse_known_args(argv)
    if known.list:
        return list_models(known.verbose)
    if known.model is None:
        usage = ("usage: python -m servers MODEL [--host 127.0.0.1] [--port 0] [model options]\n"
                 "       python -m servers --list [-v]")
        print(usage, file=sys.stdout if known.help else sys.stderr)
        return 0 if known.help else 2
    if known.model not in MODELS:
        log(f"unknown model {known.model!r}; known: {', '.join(MODELS)}")
        return 2
    reason = unavailable_reason(known.model)
    if reason is not None:
        log(f"model {known.model} is not available here: {reason}")
        return 2
    module = load(known.model)
    parser = argparse.ArgumentParser(prog=f"python -m servers {known.model}",
                                     description=module.DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=0)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    rest = list(argv)
    rest.remove(known.model)  # the model is named in prog, not a positional of its own usage
    options = parser.parse_args(rest)
    options.model = known.model
    if hasattr(module, "check"):
        module.check(options)  # raises SystemExit with a message for impossible settings
    _soft, _hard, problem = raise_fd_limit()
    if problem:
        log(f"file descriptors: {problem}")
    install_shutdown_handlers()
    listener_options = getattr(module, "listener_options", lambda _: {})(options)
    try:
        listener = make_listener(options.host, options.port, **listener_options)
    except OSError as error:
        log(f"cannot listen on {options.host}:{options.port}: {error}")
        return 1
    try:
        announce(listener)
        module.serve(listener, options)
    except Shutdown:
        pass
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
