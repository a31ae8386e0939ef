"""The git the regression gate needs: a revision's commit, the messages since it, whether the
working tree differs, and a temporary worktree of the base (removed again whatever happens)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import REPO_ROOT as ROOT
from bench.regress.model import CannotRun

GIT_TIMEOUT_S = 60


def git(*args: str, cwd: Path = ROOT) -> str:
    """Run git and return its standard output; CannotRun with git's message on failure."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CannotRun(f"git {' '.join(args)}: {error}") from error
    if done.returncode != 0:
        raise CannotRun(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def resolve_revision(rev: str, cwd: Path = ROOT) -> str:
    """The full commit id of ``rev``, or CannotRun when there is no such commit."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=cwd).strip()
    except CannotRun:
        raise CannotRun(f"no such revision: {rev!r}") from None


def commit_messages(base_sha: str, cwd: Path = ROOT) -> str:
    """The messages of base..HEAD (empty when the base is HEAD)."""
    return git("log", "--format=%B", f"{base_sha}..HEAD", cwd=cwd)


def is_dirty(cwd: Path = ROOT) -> bool:
    """Whether tracked server files differ from HEAD (the head side runs the working tree)."""
    return bool(git("status", "--porcelain", "--untracked-files=no", "--", "servers", "bench",
                    cwd=cwd).strip())


@contextlib.contextmanager
def worktree(sha: str, cwd: Path = ROOT) -> Iterator[Path]:
    """A temporary detached worktree at ``sha``, removed again whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="concbench-base-"))
    try:
        git("worktree", "add", "--detach", "--force", str(path), sha, cwd=cwd)
        yield path
    finally:
        with contextlib.suppress(CannotRun):
            git("worktree", "remove", "--force", str(path), cwd=cwd)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(CannotRun):
            git("worktree", "prune", cwd=cwd)
