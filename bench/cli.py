"""``python -m bench VERB``: the harness's one command line, a verb per command.

    run          run a scenario into a run folder, then render its report
    list         the models and scenarios that can run here, with time estimates
    report       render a run folder's report again
    regress      the CI gate: this tree's servers against a base revision's, side by side
    baseline     save or compare this machine's trend baseline (never fails a build)
    cost         instructions and system calls per request, per model and case (deterministic)
    resources    how each model behaves out of descriptors (docs/protocol.md, Out of resources)
    calibrate    how long one regression sample must be on this machine
    swarm-check  is the Python swarm fast enough to measure the servers? (make bench-swarm)

Each verb lives in the module of its stage, which declares its options with
``add_arguments(parser)`` and runs them with ``run(options) -> exit status``. Only the chosen
verb's module is imported (pyperf's ``__main__`` and asv's ``commands/`` work the same way),
so ``python -m bench --help`` and a light verb stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Verb:
    """A subcommand: the module that implements it, and a one-line help."""

    module: str
    help: str


VERBS: dict[str, Verb] = {
    "run": Verb("bench.run.command", "run a scenario into a run folder, then report it"),
    "list": Verb("bench.run.listing", "models and scenarios, with time estimates"),
    "report": Verb("bench.report.document", "render a run folder's report (again)"),
    "regress": Verb("bench.regress.check", "performance-regression gate against a revision"),
    "baseline": Verb("bench.regress.baseline", "save or compare this machine's trend baseline"),
    "cost": Verb("bench.cost.command", "instructions and system calls per request, per model"),
    "resources": Verb("bench.resources", "how each model behaves out of descriptors"),
    "calibrate": Verb("bench.regress.calibrate", "how long a regression sample must be here"),
    "swarm-check": Verb("bench.selfcheck.swarm_speed",
                        "is the swarm fast enough? (the native C client as the yardstick)"),
    "validate": Verb("bench.selfcheck.validate",
                     "the instrument against trusted tools: a table of checks, exit 1 on a fail"),
}


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The one parser; only ``verb``'s module is imported to declare its options."""
    top = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                  epilog="python -m bench VERB --help: that verb's options")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, spec in VERBS.items():
        command = sub.add_parser(name, help=spec.help, description=spec.help)
        if name == verb:
            module = importlib.import_module(spec.module)
            command.description = (module.__doc__ or spec.help).strip()
            command.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(command)
    return top


def _chosen_verb(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option, if it names a verb."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in VERBS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, import the verb's module, run it; Ctrl-C ends it with 130 and no child left."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = parser(_chosen_verb(args)).parse_args(args)
    try:
        module = importlib.import_module(VERBS[options.verb].module)
        return int(module.run(options) or 0)
    except KeyboardInterrupt:
        from bench import procs

        procs.kill_all()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
