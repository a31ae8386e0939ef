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
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

EXIT_INTERRUPTED = 130
PROG = "python -m bench"
DESCRIPTION = "concbench: which server concurrency model should I use, for this load?"


@dataclass(frozen=True)
class Verb:
    """A subcommand: the module that implements it, and a one-line help."""

    module: str
    help: str


VERBS: dict[str, Verb] = {
    "run": Verb("bench.run.command", "run a scenario into a run folder, then report it"),
    "compare": Verb("bench.compare", "run B against run A: ratios, intervals, significance"),
    "list": Verb("bench.run.listing", "models and scenarios, with time estimates"),
    "report": Verb("bench.report.document", "render a run folder's report (again)"),
    "regress": Verb("bench.regress.check", "performance-regression gate against a revision"),
    "baseline": Verb("bench.regress.baseline", "save or compare this machine's trend baseline"),
    "cost": Verb("bench.cost.command", "instructions and system calls per request, per model"),
    "calibrate": Verb("bench.regress.calibrate", "how long a regression sample must be here"),
    "swarm-check": Verb("bench.selfcheck.swarm_speed",
                        "is the swarm fast enough? (the native C client as the yardstick)"),
    "validate": Verb("bench.selfcheck.validate",
                     "the instrument against trusted tools: a table of checks, exit 1 on a fail"),
}


MARKUP = re.compile(r"``(.+?)``|\*\*(.+?)\*\*|(?<![\w`])`([^`\n]+)`(?![\w`])")


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


def parser(verb: str | None = None, prog: str = PROG) -> argparse.ArgumentParser:
    """The one parser; only ``verb``'s module is imported to declare its options."""
    top = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=PlainHelp,
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
