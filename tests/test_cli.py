"""The command line as a user meets it: usage errors are one line on stderr with exit 2, values
that make no sense are refused, help texts carry no markup, records are as readable as the
report, and ``bench list`` fits 100 columns."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.run import listing
from protocol.launch import atomic_write_json

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [
    ["report", "RUN", "--slo-ms", "0"], ["report", "RUN", "--slo-ms", "-3"],
    ["report", "RUN", "--margin", "-1"], ["report", "RUN", "--margin", "nan"],
    ["run", "--repeat", "0"], ["nosuch"], [],
])
def test_a_usage_error_is_one_line_on_stderr(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("python -m bench")


@pytest.mark.parametrize("verb", [None, *cli.VERBS])
def test_help_texts_are_plain_words(verb: str | None) -> None:
    text = cli.parser(verb).format_help() if verb is None else \
        cli.parser(verb)._subparsers._group_actions[0].choices[verb].format_help()  # noqa: SLF001
    assert "``" not in text and "**" not in text
    assert not any(line.count("`") >= 2 for line in text.splitlines()), text


def test_plain_takes_out_markup() -> None:
    assert cli.plain("``python -m bench VERB`` and **cost** and `make bench`") == \
        "python -m bench VERB and cost and make bench"


def test_report_errors_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1


def test_records_are_written_readable_like_the_report(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    atomic_write_json(path, {"a": 1})
    plain_file = tmp_path / "report.md"
    plain_file.write_text("x")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain_file).st_mode)


def test_the_listing_fits_100_columns() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert any(line.startswith("scenarios") for line in lines)
    assert max(map(len, lines)) <= listing.WIDTH


@pytest.mark.parametrize("verb", cli.VERBS)
def test_each_verb_lives_in_a_module_named_after_it(verb: str) -> None:
    """A newcomer finds a verb's code from its name: ``swarm-check`` in a path holding
    ``swarm_check``, ``regress`` in ``bench.regress``."""
    assert verb.replace("-", "_") in cli.VERBS[verb].module
