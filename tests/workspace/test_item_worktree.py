"""An item's worktree before and after an attempt (``executors/worktree.py``), on a real
repository: what continues, what is reset, what a killed process left behind.

Regression tests for two bugs the worktree torture run found (seeds 3855089579, 12345):
a resume continued a worktree that a kill had left half re-pointed (so the item committed
another item's files), and an item's own ``git commit`` met a stale ``index.lock``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from mapwise.domain.records import ItemWorkspace
from mapwise.executors import worktree
from mapwise.workspace.git import Repo

JOB_BRANCH = "mapwise/j/result"
Git = Callable[..., str]  # the ``git`` fixture: git(cwd, *args) -> stdout


def _workspace(repo: Path, tmp_path: Path, start: str | None, branch: str) -> ItemWorkspace:
    return ItemWorkspace(
        repo=str(repo),
        worktree=str(tmp_path / "pool" / "wt-0"),
        branch=branch,
        job_branch=JOB_BRANCH,
        start=start,
        subdir="",
    )


def _gitdir(path: Path) -> Path:
    out = subprocess.run(
        ["git", "rev-parse", "--git-dir"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(out) if Path(out).is_absolute() else path / out


def test_a_worktree_made_ready_continues_as_its_item_left_it(
    repo: Path, tmp_path: Path, git: Git
) -> None:
    # Given an item's worktree, made ready, where the item left an uncommitted draft
    git(repo, "branch", JOB_BRANCH)
    first = worktree.prepare(_workspace(repo, tmp_path, JOB_BRANCH, "mapwise/j/item/a"))
    worktree.mark_ready(_workspace(repo, tmp_path, JOB_BRANCH, "mapwise/j/item/a"))
    (first.path / "draft.txt").write_text("half done\n")

    # When the interrupted item's next attempt continues
    again = worktree.prepare(_workspace(repo, tmp_path, None, "mapwise/j/item/a"))

    # Then nothing was reset: the draft is still there
    assert not again.fresh
    assert (again.path / "draft.txt").read_text() == "half done\n"


def test_a_worktree_left_half_made_is_made_again_not_continued(
    repo: Path, tmp_path: Path, git: Git
) -> None:
    # Given a pool worktree that held another item's files (tracked there, untracked on
    # this item's branch) and was being re-pointed to item b when the run was killed
    git(repo, "branch", JOB_BRANCH)
    other = _workspace(repo, tmp_path, JOB_BRANCH, "mapwise/j/item/a")
    made = worktree.prepare(other)
    (made.path / "a-only.txt").write_text("item a's work\n")
    git(made.path, "add", "-A")
    git(made.path, "commit", "--quiet", "-m", "a")
    git(made.path, "checkout", "--quiet", "--detach")
    # (the kill came after the branch moved and HEAD switched, before the files did)
    git(repo, "branch", "mapwise/j/item/b", JOB_BRANCH)
    git(made.path, "symbolic-ref", "HEAD", "refs/heads/mapwise/j/item/b")
    assert (made.path / "a-only.txt").exists()

    # When item b's interrupted attempt asks to continue
    again = worktree.prepare(_workspace(repo, tmp_path, None, "mapwise/j/item/b"))

    # Then the worktree is made again from b's branch, without a's file
    assert again.fresh
    assert not (again.path / "a-only.txt").exists()
    assert Repo(repo).worktree_paths().get(again.path.resolve()) == "mapwise/j/item/b"


def test_a_stale_index_lock_of_a_killed_git_is_cleared(
    repo: Path, tmp_path: Path, git: Git
) -> None:
    # Given an item's worktree whose index.lock a killed git process left behind
    git(repo, "branch", JOB_BRANCH)
    ws = _workspace(repo, tmp_path, JOB_BRANCH, "mapwise/j/item/a")
    made = worktree.prepare(ws)
    worktree.mark_ready(ws)
    (_gitdir(made.path) / "index.lock").write_text("")

    # When the item's next attempt starts, and its agent commits
    again = worktree.prepare(_workspace(repo, tmp_path, None, "mapwise/j/item/a"))
    (again.path / "new.txt").write_text("x\n")
    git(again.path, "add", "-A")
    git(again.path, "commit", "--quiet", "-m", "the agent's own commit")

    # Then the commit went through
    assert git(again.path, "log", "-1", "--format=%s").strip() == "the agent's own commit"
