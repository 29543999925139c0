"""Real git repositories for the workspace tests, in a git environment of their own.

Every test runs with HOME pointing at an empty folder and the system config ignored, so
the machine's git config (a signing key, hooks, a default branch) cannot change what the
tests see; the ``repo`` fixture sets user.name/user.email in the repository's own config.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Git = Callable[..., str]


def run_git_cli(cwd: Path, *args: str, check: bool = True) -> str:
    """Plain ``git`` as a user would run it (not mapwise's ``run_git``); its stdout."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {args} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global or system git config, and no identity from the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def git() -> Git:
    """``git(cwd, *args)``: run plain git in ``cwd``; its stdout (AssertionError on failure)."""
    return run_git_cli


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository (in a folder whose name has a space and an accent) with two commits.

    Files: ``README.md``, ``src/app.py``, ``notes/ü file.txt``; ``.gitignore`` ignores
    ``*.log`` and ``.venv/``. Branch ``main``; user.name/user.email in its local config.
    """
    path = tmp_path / "my repö"
    path.mkdir()
    run_git_cli(path, "init", "--quiet", "--initial-branch=main")
    run_git_cli(path, "config", "user.name", "Repo Owner")
    run_git_cli(path, "config", "user.email", "owner@example.com")
    (path / "README.md").write_text("# demo\nline two\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hello')\n")
    (path / ".gitignore").write_text("*.log\n.venv/\n")
    run_git_cli(path, "add", "-A")
    run_git_cli(path, "commit", "--quiet", "-m", "first")
    (path / "notes").mkdir()
    (path / "notes" / "ü file.txt").write_text("notes\n")
    run_git_cli(path, "add", "-A")
    run_git_cli(path, "commit", "--quiet", "-m", "second")
    return path
