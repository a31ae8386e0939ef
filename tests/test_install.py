"""What ``pip install .`` puts into site-packages: one top-level name, ``concbench`` (the four
code folders inside it, why in concbench/__init__.py), its data files, and a ``concbench``
command whose verbs are ``python -m bench``'s; and a single server needs no analysis stack."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.cli import VERBS

REPO = Path(__file__).resolve().parent.parent
ANALYSIS_STACK = ("pandas", "scipy", "matplotlib")
SOURCE = ("pyproject.toml", "setup.py", "README.md", "concbench", "bench", "clients",
          "protocol", "servers")
IGNORED = shutil.ignore_patterns("build", "__pycache__")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # a copy: building leaves build/ and *.egg-info behind
    source.mkdir()
    for name in SOURCE:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"ignore": IGNORED} if copy is shutil.copytree
                                            else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(folder), str(source)],
                   check=True, capture_output=True, timeout=300)
    return zipfile.ZipFile(next(folder.glob("concbench-*.whl")))


def test_the_wheel_installs_one_top_level_name(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"concbench"}
    names = set(wheel.namelist())
    for folder in ("bench", "clients", "protocol", "servers"):
        assert f"concbench/{folder}/__init__.py" in names
    assert "concbench/bench/scenarios/quick.toml" in names
    assert "concbench/servers/native/server.c" in names


def test_the_wheel_declares_the_concbench_command(wheel: zipfile.ZipFile) -> None:
    points = next(name for name in wheel.namelist() if name.endswith("entry_points.txt"))
    assert "concbench = concbench.command:main" in wheel.read(points).decode()


def test_the_command_has_the_same_verbs() -> None:
    done = subprocess.run([sys.executable, "-m", "concbench", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=True)
    assert done.stdout.startswith("usage: concbench")
    for verb in VERBS:
        assert f"\n    {verb}" in done.stdout


def test_a_server_imports_no_analysis_stack() -> None:
    """Every model module and the servers' command line, with the analysis stack blocked."""
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in ANALYSIS_STACK)
    code = (f"import sys; {blocked}\n"
            "import servers, servers.__main__\n"
            "for name in servers.MODELS:\n"
            "    if servers.unavailable_reason(name) is None: servers.load(name)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
