"""Running git: every git command mapwise runs goes through ``run_git``.

Why: a worktree job writes one repository from many places at once (item commits, merges
into the job branch, worktrees added and removed) while the user may run git in their own
checkout. Each of those is a chance for git to refuse because another git holds a lock,
for a background ``gc`` to race a ref update, or for an inherited setting to stall or
misdirect git. So every call is the same safe call:

- ``["git", *GIT_OPTIONS, *args]`` from a list argv (never a shell), stdin ``/dev/null``,
  in an environment that cannot stall or misdirect git (``_git_env``);
- ``GIT_OPTIONS`` turns automatic ``gc`` and ``maintenance`` off: a commit or merge may
  otherwise start ``git gc --auto`` in the background, which under many concurrent
  worktrees races their ref updates (``packed-refs.lock``, "cannot lock ref") and may
  prune objects a concurrent ``merge-tree`` has written but not yet referenced;
- a command that fails because another git holds a lock is retried with backoff
  (``_LOCK_SIGNS``), for about ten seconds, then fails with git's own output in full.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import GitError

__all__ = [
    "GIT_OPTIONS",
    "MIN_VERSION",
    "GitResult",
    "failure",
    "git_version",
    "retrying",
    "run_git",
]

GIT_OPTIONS: tuple[str, ...] = ("-c", "gc.auto=0", "-c", "maintenance.auto=0")
MIN_VERSION = (2, 38)  # `git merge-tree --write-tree` (checks a merge without a worktree)

_RETRY_FIRST = 0.05  # first wait after a lock failure; doubles each time
_RETRY_MAX_DELAY = 1.0  # longest single wait
_RETRY_TOTAL = 10.0  # give up (and raise git's error) after about this long

# What git says when another git holds a lock: worth waiting for, unlike other failures.
_LOCK_SIGNS = ("index.lock", "config.lock", ".lock': File exists", "cannot lock ref")
# ...except a name that clashes with an existing branch, which waiting never fixes.
_LOCK_PERMANENT = ("exists; cannot create",)

# Variables that point git at a repository: inherited from a caller (say, a git hook that
# runs mapwise), they would override the ``cwd`` that names the repository on purpose.
_LOCATING_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_SHALLOW_FILE",
)


@dataclass(frozen=True)
class GitResult:
    """What one git command did: its exit status and its output, decoded."""

    returncode: int
    stdout: str
    stderr: str


def _git_env() -> dict[str, str]:
    """The environment of every git command: the caller's, made safe for a background run.

    LC_ALL=C keeps the messages English (``_LOCK_SIGNS`` matches them); no prompt or
    editor can wait for a person who is not there; optional locks are off, so a read such
    as ``status`` never takes ``index.lock`` to refresh the index and never makes a
    concurrent write fail.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LOCATING_VARS}
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        GIT_EDITOR="true",
        GIT_MERGE_AUTOEDIT="no",
    )
    return env


def _decode(data: bytes) -> str:
    # surrogateescape: a file name that is not UTF-8 survives the round trip to a Path.
    return data.decode("utf-8", "surrogateescape")


def _run_once(args: Sequence[str], cwd: Path) -> GitResult:
    try:
        done = subprocess.run(
            ["git", *GIT_OPTIONS, *args],
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError as exc:  # git missing, or cwd gone
        raise GitError(f"git {shlex.join(args)} could not start in {cwd}: {exc}") from exc
    return GitResult(done.returncode, _decode(done.stdout), _decode(done.stderr))


def _lock_held(result: GitResult) -> bool:
    """Did git fail only because another git holds a lock?"""
    text = result.stderr
    return any(s in text for s in _LOCK_SIGNS) and not any(s in text for s in _LOCK_PERMANENT)


def retrying(attempt: Callable[[], GitResult]) -> GitResult:
    """Run ``attempt`` until it does not fail on a held lock, or the time is up."""
    deadline = time.monotonic() + _RETRY_TOTAL
    delay = _RETRY_FIRST
    while True:
        result = attempt()
        if result.returncode == 0 or not _lock_held(result):
            return result
        if time.monotonic() + delay > deadline:
            return result
        time.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX_DELAY)


def failure(args: Sequence[str], cwd: Path, result: GitResult) -> GitError:
    output = result.stderr.rstrip()
    if result.stdout.strip():  # merge and commit explain themselves on stdout
        output = f"{output}\n{result.stdout.rstrip()}".lstrip("\n")
    return GitError(f"git {shlex.join(args)} failed in {cwd} (exit {result.returncode}):\n{output}")


def run_git(args: Sequence[str], *, cwd: Path, check: bool = True) -> GitResult:
    """Run one git command in ``cwd``, retrying while another git holds a lock.

    With ``check`` a non-zero exit raises ``GitError`` holding git's output in full;
    without it the caller reads ``returncode`` (for commands whose exit 1 is an answer).
    """
    result = retrying(lambda: _run_once(args, cwd))
    if check and result.returncode != 0:
        raise failure(args, cwd, result)
    return result


def git_version() -> tuple[int, int, int]:
    """The installed git's version; ``GitError`` when there is no git on PATH."""
    if shutil.which("git") is None:
        raise GitError("git is not installed (no `git` on PATH)")
    out = run_git(["--version"], cwd=Path("/")).stdout  # needs no repository
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if match is None:
        raise GitError(f"cannot read git's version from {out.strip()!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)
