"""``python -m bench VERB`` (installed: ``concbench VERB``): the harness's one command line.

The verbs are ``VERBS`` below. Each lives in the module of its stage, which declares its
options with ``add_arguments(parser)`` and runs them with ``run(options) -> exit status``. Only
the chosen verb's module is imported (pyperf's ``__main__`` and asv's ``commands/`` work the
same way), so ``python -m bench --help`` and a light verb stay fast. Help texts are printed in
plain words: the reStructuredText and Markdown marks docstrings use are taken out
(``PlainHelp``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

EXIT_INTERRUPTED = 130
PROG = "python -m bench"
DESCRIPTION = "concbench: which server concurrency model should I use, for this load?"


@dataclass(frozen=True)
class Verb:
    """A subcommand: the module that implements it, and a one-line help."""

    module: str
    help: str


VERBS: dict[str, Verb] = {
    "run": Verb("bench.run.run", "run a scenario into a run folder, then report it"),
    "compare": Verb("bench.compare", "run B against run A: ratios, intervals, significance"),
    "list": Verb("bench.run.listing", "models and scenarios, with time estimates"),
    "report": Verb("bench.report.document", "render a run folder's report (again)"),
    "regress": Verb("bench.regress.check", "performance-regression gate against a revision"),
    "baseline": Verb("bench.regress.baseline", "save or compare this machine's trend baseline"),
    "cost": Verb("bench.cost.command", "instructions and system calls per request, per model"),
    "classics": Verb("bench.run.classics",
                     "the field's known results, reproduced here beside their sources"),
    "resources": Verb("bench.resources", "how each model behaves out of descriptors"),
    "calibrate": Verb("bench.regress.calibrate", "how long a regression sample must be here"),
    "swarm-check": Verb("bench.selfcheck.swarm_check",
                        "is the swarm fast enough? (the native C client as the yardstick)"),
    "validate": Verb("bench.selfcheck.validate",
                     "the instrument against trusted tools: a table of checks, exit 1 on a fail"),
}


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive(text: str) -> float:
    """argparse type: a finite number above zero (an SLO, a duration)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite number, zero or above (a margin)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def at_least_one(text: str) -> int:
    """argparse type: a whole number, 1 or more (repetitions)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


# ``code`` and **bold** may span a line break; a single `code` stays on its line
MARKUP = re.compile(r"``(.+?)``|\*\*(.+?)\*\*|(?<![\w`])`([^`\n]+)`(?![\w`])", re.DOTALL)


def plain(text: str) -> str:
    """``code``, **bold** and `code` as plain words (help texts are read in a terminal)."""
    return MARKUP.sub(lambda match: next(group for group in match.groups() if group), text)


class PlainHelp(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written (their line breaks matter), markup taken out of them and
    of every option's help."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


class Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, naming the command, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} ({self.prog} --help: the options)\n")


def parser(verb: str | None = None, prog: str = PROG) -> argparse.ArgumentParser:
    """The one parser; only ``verb``'s module is imported to declare its options."""
    top = Parser(prog=prog, description=DESCRIPTION, formatter_class=PlainHelp,
                                  epilog=f"{prog} VERB --help: that verb's options")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, spec in VERBS.items():
        command = sub.add_parser(name, help=spec.help, description=spec.help,
                                 formatter_class=PlainHelp)
        if name == verb:
            module = importlib.import_module(spec.module)
            command.description = (module.__doc__ or spec.help).strip()
            module.add_arguments(command)
    return top


def _chosen_verb(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option, if it names a verb."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in VERBS else None


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse, import the verb's module, run it; Ctrl-C ends it with 130 and no child left.
    ``prog``: the name the help texts give the command (``concbench`` once installed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = parser(_chosen_verb(args), prog).parse_args(args)
    try:
        module = importlib.import_module(VERBS[options.verb].module)
        return int(module.run(options) or 0)
    except KeyboardInterrupt:
        from bench import procs

        procs.kill_all()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): no traceback, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
