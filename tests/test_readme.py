"""The README and docs/ name only what exists: every ``make`` target, ``bench`` verb,
scenario and model they show as a command, and every file they point at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import servers
from bench.cli import VERBS
from bench.run.scenario import scenario_names

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCED = re.compile(r"```.*?\n(.*?)```", re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?:^|[\s;(&|])make ([a-z][\w-]*)")
VERB = re.compile(r"(?:python -m bench|concbench|^bench)\s+([a-z][\w-]*)")
SCENARIO = re.compile(r"--scenario[ =]([a-z][\w-]*)")
MODEL = re.compile(r"python -m servers ([a-z][\w-]*)")
SCENARIO_WORDS = re.compile(r"the `([a-z][\w-]*)` scenario")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def commands(text: str) -> list[str]:
    """What a page shows as code: fenced blocks line by line, then inline code spans."""
    blocks = FENCED.findall(text)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return lines + SPAN.findall(FENCED.sub("", text))


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"(?m)^([a-z][\w-]*):", text))


def named(text: str) -> dict[str, set[str]]:
    """The make targets, verbs, scenarios and models a page names as commands."""
    found: dict[str, set[str]] = {"target": set(), "verb": set(), "scenario": set(),
                                  "model": set()}
    for command in commands(text):
        found["target"] |= set(MAKE.findall(command))
        found["verb"] |= set(VERB.findall(command))
        found["scenario"] |= set(SCENARIO.findall(command))
        found["model"] |= set(MODEL.findall(command))
    found["scenario"] |= set(SCENARIO_WORDS.findall(text))
    return found


def unknown(text: str) -> dict[str, set[str]]:
    """What a page names that does not exist."""
    known = {"target": makefile_targets(), "verb": set(VERBS),
             "scenario": set(scenario_names()), "model": set(servers.MODELS)}
    return {kind: names - known[kind] for kind, names in named(text).items()
            if names - known[kind]}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_a_page_names_exists(page: Path) -> None:
    assert unknown(page.read_text()) == {}


def test_the_readme_shows_the_two_commands_and_its_picture() -> None:
    text = (REPO / "README.md").read_text()
    first_screen = "\n".join(text.splitlines()[:40])
    assert "make test" in first_screen and "make bench" in first_screen
    assert "results/" in first_screen and "report.html" in first_screen
    for image in IMAGE.findall(text):
        assert (REPO / image).is_file(), image


def test_the_check_catches_what_does_not_exist() -> None:
    text = ("Run `make benchmark` or:\n```\npython -m bench frobnicate\n"
            "concbench run --scenario nosuch\npython -m servers nomodel\n```\n"
            "and the `imaginary` scenario.")
    assert unknown(text) == {"target": {"benchmark"}, "verb": {"frobnicate"},
                             "scenario": {"nosuch", "imaginary"}, "model": {"nomodel"}}
    assert unknown("`make bench` then `python -m bench run --scenario quick`") == {}
