"""scripts/build_freethreaded.sh (``make freethreaded``) on a fresh clone, without building.

Every run gets its own FT_PREFIX and FT_WORK under ``tmp_path`` (an empty cache, as on a fresh
clone) and stub ``cc``, ``make``, ``xz``, ``dpkg``, ``apt-get`` and ``apt-cache`` first on PATH:
the stubs record their calls, never touch apt or the network, and a stub ``make altinstall``
"installs" a fake interpreter, so even a full run takes well under a second. Most runs use
FT_DRY_RUN=1, which stops after the source lookup, before any apt change, download or build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_freethreaded.sh"
BASH = shutil.which("bash")
TIMEOUT = 60  # seconds per run of the script; a run takes well under one
SRC_LIST = Path("/etc/apt/sources.list.d/concbench-python3.13-src.sources")

TOOLS_STEP = "checking the build tools"
LOOKUP_STEP = "looking for a downloaded source package in"
PREPARE_STEP = "preparing the build folder"
ERROR_STEP = re.compile(r'ERROR: step "([^"]*)" failed')

pytestmark = pytest.mark.skipif(
    BASH is None, reason="bash is not installed: cannot run scripts/build_freethreaded.sh"
)

# Appends "<tool> <arguments>" to $STUB_CALLS; the tool's own lines follow.
STUB_HEAD = '#!/bin/sh\necho "$(basename "$0") $*" >>"$STUB_CALLS"\n'
STUBS = {
    "cc": "exit 0\n",
    "xz": "exit 0\n",
    "dpkg": "exit 0\n",  # dpkg -s zlib1g-dev: installed
    # With STUB_APT_SOURCE set, apt knows python3.13's source package; else it has no deb-src.
    "apt-cache": (
        'if [ -n "${STUB_APT_SOURCE:-}" ]; then\n'
        "    printf 'Package: python3.13\\nBinary: python3.13\\nVersion: 3.13.0-1\\n\\n'\n"
        "    exit 0\n"
        "fi\n"
        "echo \"E: You must put some 'deb-src' URIs in your sources.list\" >&2\n"
        "exit 100\n"
    ),
    # `apt-get source --download-only python3.13` "downloads" $STUB_ORIG into the current folder.
    "apt-get": (
        'if [ "$1" = source ]; then cp "$STUB_ORIG" . && exit 0; fi\n'
        'echo "stub apt-get: not expected here: $*" >&2\n'
        "exit 1\n"
    ),
    # `make altinstall` installs a fake free-threaded interpreter into $FT_PREFIX.
    "make": (
        'if [ "${1:-}" = altinstall ]; then\n'
        '    mkdir -p "$FT_PREFIX/bin"\n'
        "    cat >\"$FT_PREFIX/bin/python3.13t\" <<'EOF'\n"
        "#!/bin/sh\n"
        'if [ "$1" = -VV ]; then echo "Python 3.13.0 (stub)"; else echo False; fi\n'
        "EOF\n"
        '    chmod +x "$FT_PREFIX/bin/python3.13t"\n'
        "fi\n"
        "exit 0\n"
    ),
}


@dataclass
class Sandbox:
    """A fresh-clone cache (FT_PREFIX, FT_WORK) and a folder of stub tools, under tmp_path."""

    root: Path

    @property
    def prefix(self) -> Path:
        return self.root / "prefix"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def bin(self) -> Path:
        return self.root / "stub-bin"

    @property
    def calls(self) -> Path:
        return self.root / "stub-calls.txt"

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(STUB_HEAD + body)
        path.chmod(0o755)

    def run(self, *, dry_run: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        assert BASH is not None
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FT_")}
        full_env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            LC_ALL="C",
            FT_PREFIX=str(self.prefix),
            FT_WORK=str(self.work),
            FT_JOBS="2",
            STUB_CALLS=str(self.calls),
            STUB_ORIG=str(self.root / "python3.13_3.13.0.orig.tar.gz"),
        )
        if dry_run:
            full_env["FT_DRY_RUN"] = "1"
        full_env.update(env)
        return subprocess.run(
            [BASH, str(SCRIPT)],
            env=full_env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def tool_calls(self, tool: str) -> list[str]:
        if not self.calls.exists():
            return []
        lines = self.calls.read_text().splitlines()
        return [line for line in lines if line.split(" ", 1)[0] == tool]


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    box = Sandbox(tmp_path)
    box.bin.mkdir()
    for name, body in STUBS.items():
        box.stub(name, body)
    # the upstream tarball the stub apt-get "downloads": a fake tree whose configure does nothing
    tree = tmp_path / "stage" / "Python-3.13.0"
    tree.mkdir(parents=True)
    (tree / "configure").write_text("#!/bin/sh\nexit 0\n")
    (tree / "configure").chmod(0o755)
    with tarfile.open(tmp_path / "python3.13_3.13.0.orig.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return box


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def failed_steps(result: subprocess.CompletedProcess[str]) -> list[str]:
    return ERROR_STEP.findall(result.stderr)


@pytest.mark.parametrize("apt_has_source", [False, True], ids=["no-deb-src", "deb-src"])
def test_dry_run_on_an_empty_cache_gets_past_the_tools_and_the_source_lookup(
    sandbox: Sandbox, apt_has_source: bool
) -> None:
    src_list_before = SRC_LIST.exists()
    result = sandbox.run(STUB_APT_SOURCE="1" if apt_has_source else "")
    assert result.returncode == 0, describe(result)
    assert "ERROR" not in result.stderr, describe(result)
    out = result.stdout
    assert f"step: {TOOLS_STEP}" in out, describe(result)
    assert f"step: {LOOKUP_STEP}" in out, describe(result)
    assert out.index(TOOLS_STEP) < out.index(LOOKUP_STEP), describe(result)
    assert "no source package downloaded yet" in out, describe(result)
    if apt_has_source:
        assert "apt has python3.13 3.13.0-1 source; would download it" in out, describe(result)
    else:
        assert "apt has no python3.13 source; would add a deb-src entry" in out, describe(result)
    assert "dry run (FT_DRY_RUN=1): stopping before" in out, describe(result)
    # nothing destructive: no apt-get at all, apt's sources as they were, nothing downloaded,
    # built or installed, no build log; only the empty cache folder is created
    assert sandbox.tool_calls("apt-get") == []
    assert sandbox.tool_calls("make") == []
    assert SRC_LIST.exists() == src_list_before
    assert not sandbox.prefix.exists()
    assert sorted(p.relative_to(sandbox.work).as_posix() for p in sandbox.work.rglob("*")) == [
        "src"
    ]


def test_dry_run_finds_an_already_downloaded_source_package_and_leaves_it_packed(
    sandbox: Sandbox,
) -> None:
    (sandbox.work / "src").mkdir(parents=True)
    shutil.copy(sandbox.root / "python3.13_3.13.0.orig.tar.gz", sandbox.work / "src")
    result = sandbox.run()
    assert result.returncode == 0, describe(result)
    assert "source package already downloaded: python3.13_3.13.0.orig.tar.gz" in result.stdout
    assert "dry run: would unpack python3.13_3.13.0.orig.tar.gz" in result.stdout
    assert not list(sandbox.work.glob("Python-3.13*")), "a dry run must not unpack"
    assert sandbox.tool_calls("apt-get") == []
    assert sandbox.tool_calls("apt-cache") == []  # known source: apt is not even asked


def test_a_failing_source_lookup_is_reported_under_its_own_step(sandbox: Sandbox) -> None:
    # the lookup's `find` fails: the error must name the lookup, not "checking the build tools"
    sandbox.stub("find", 'echo "find: stub failure" >&2\nexit 3\n')
    result = sandbox.run()
    assert result.returncode == 3, describe(result)
    steps = failed_steps(result)
    assert len(steps) == 1, f"want exactly one error line\n{describe(result)}"
    assert steps[0].startswith(LOOKUP_STEP), describe(result)
    assert TOOLS_STEP not in result.stderr, describe(result)


def test_an_impossible_build_folder_is_reported_under_its_own_step(sandbox: Sandbox) -> None:
    # FT_WORK below a regular file cannot be created: the very first step fails (before the
    # build log exists; the error report must cope with that, not stumble over the missing log)
    blocker = sandbox.root / "not-a-folder"
    blocker.write_text("")
    work = blocker / "work"
    result = sandbox.run(FT_WORK=str(work))
    assert result.returncode != 0, describe(result)
    steps = failed_steps(result)
    assert steps == [f"{PREPARE_STEP} {work}"], describe(result)
    assert "tail:" not in result.stderr, describe(result)
    assert sandbox.tool_calls("apt-get") == []


def test_a_full_run_on_a_fresh_clone_downloads_builds_and_then_is_idempotent(
    sandbox: Sandbox,
) -> None:
    # the real (not dry) path from an empty cache, with stub apt and make: nothing is built
    result = sandbox.run(dry_run=False, STUB_APT_SOURCE="1")
    assert result.returncode == 0, describe(result)
    assert sandbox.tool_calls("apt-get") == ["apt-get source --download-only python3.13"]
    assert sandbox.tool_calls("make") == ["make -j2", "make altinstall"]
    assert (sandbox.work / "src" / "python3.13_3.13.0.orig.tar.gz").is_file()
    assert (sandbox.work / "build.log").is_file()
    assert not list(sandbox.work.glob("Python-3.13*")), "the build tree is removed by default"
    assert (sandbox.prefix / "bin" / "python3.13t").is_file()
    assert "done in" in result.stdout, describe(result)
    assert result.stderr == "", describe(result)

    again = sandbox.run(dry_run=False, STUB_APT_SOURCE="1")
    assert again.returncode == 0, describe(again)
    assert "already built:" in again.stdout, describe(again)
    assert sandbox.tool_calls("apt-get") == ["apt-get source --download-only python3.13"]
