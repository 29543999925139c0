"""Commits and merges of worktree mode, on real repositories."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mapwise.errors import GitError
from mapwise.workspace.git import Repo

Git = Callable[..., str]  # the `git` fixture: git(cwd, *args) -> stdout


def commit_change(r: Repo, wt: Path, name: str, text: str = "x\n") -> str:
    (wt / name).write_text(text)
    sha = r.commit_all(wt, f"change {name}")
    assert sha is not None
    return sha


@pytest.fixture
def job(repo: Path, tmp_path: Path) -> tuple[Repo, Path]:
    """The repository and a job worktree on ``mapwise/j/result``."""
    r = Repo(repo)
    wt = tmp_path / "job wt"
    r.add_worktree(wt, "mapwise/j/result", "HEAD")
    return r, wt


# -- commits ----------------------------------------------------------------------------


def test_commit_all_commits_everything_with_the_repository_author(
    repo: Path, tmp_path: Path, git: Git
) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    (wt / "README.md").write_text("edited\n")
    (wt / "dossier ü").mkdir()
    (wt / "dossier ü" / "new file.txt").write_text("new\n")
    (wt / "notes" / "ü file.txt").unlink()
    (wt / "debug.log").write_text("ignored\n")
    sha = r.commit_all(wt, "mapwise: item a")
    assert sha == r.head(wt) == r.rev_parse("mapwise/j/item/a")
    assert not r.is_dirty(wt)
    shown = git(wt, "show", "--quiet", "--format=%an <%ae>|%cn <%ce>|%s", "HEAD").strip()
    assert shown == "Repo Owner <owner@example.com>|Repo Owner <owner@example.com>|mapwise: item a"
    files = git(wt, "show", "--name-status", "--format=", "-z", "HEAD").split("\0")
    assert "dossier ü/new file.txt" in files
    assert "notes/ü file.txt" in files
    assert "debug.log" not in files


def test_commit_all_with_nothing_to_commit(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "b", "HEAD")
    before = r.head(wt)
    (wt / "only.log").write_text("ignored\n")
    assert r.commit_all(wt, "nothing") is None
    assert r.head(wt) == before


def test_commit_all_without_user_config_uses_mapwise(repo: Path, git: Git) -> None:
    # Given no user.name/user.email anywhere (HOME is empty, system config off)
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    (repo / "README.md").write_text("edited\n")
    sha = Repo(repo).commit_all(repo, "mapwise: x")
    assert sha is not None
    shown = git(repo, "show", "--quiet", "--format=%an <%ae>|%cn <%ce>", sha).strip()
    assert shown == "mapwise <mapwise@localhost>|mapwise <mapwise@localhost>"
    # and nothing was written to the repository's config
    assert git(repo, "config", "--get", "user.name", check=False) == ""


def test_commit_all_keeps_a_configured_name_when_only_the_email_is_missing(
    repo: Path, git: Git
) -> None:
    git(repo, "config", "--unset", "user.email")
    (repo / "README.md").write_text("edited\n")
    sha = Repo(repo).commit_all(repo, "m")
    assert sha is not None
    shown = git(repo, "show", "--quiet", "--format=%an <%ae>", sha).strip()
    assert shown == "Repo Owner <mapwise@localhost>"


def test_commit_all_skips_hooks(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    (repo / "README.md").write_text("edited\n")
    assert Repo(repo).commit_all(repo, "m") is not None


# -- merges -----------------------------------------------------------------------------


def test_merge_conflicts_clean(job: tuple[Repo, Path], tmp_path: Path) -> None:
    r, _ = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    r.add_worktree(tmp_path / "b", "item-b", "mapwise/j/result")
    commit_change(r, tmp_path / "a", "a.txt")
    commit_change(r, tmp_path / "b", "b.txt")
    assert r.merge_conflicts("item-a", "item-b") == []
    assert r.merge_conflicts("mapwise/j/result", "item-a") == []


def test_merge_conflicts_lists_the_conflicting_paths(
    job: tuple[Repo, Path], tmp_path: Path
) -> None:
    r, _ = job
    for name, text in (("a", "one\n"), ("b", "two\n")):
        wt = tmp_path / name
        r.add_worktree(wt, f"item-{name}", "mapwise/j/result")
        (wt / "README.md").write_text(f"# demo\n{text}")
        (wt / "notes" / "ü file.txt").write_text(text)
        (wt / f"only-{name}.txt").write_text(text)
        assert r.commit_all(wt, name) is not None
    conflicts = r.merge_conflicts("item-a", "item-b")
    assert sorted(conflicts) == ["README.md", "notes/ü file.txt"]


def test_merge_conflicts_of_an_unknown_branch_is_a_git_error(job: tuple[Repo, Path]) -> None:
    r, _ = job
    with pytest.raises(GitError):
        r.merge_conflicts("mapwise/j/result", "no-such-branch")


def test_merge_makes_a_no_ff_merge_commit(job: tuple[Repo, Path], tmp_path: Path, git: Git) -> None:
    r, job_wt = job
    base = r.head(job_wt)
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    item_sha = commit_change(r, tmp_path / "a", "a.txt")
    assert not r.is_ancestor(item_sha, "mapwise/j/result")
    assert r.unmerged_commits("item-a", "mapwise/j/result") == 1
    # When merged (a fast-forward would be possible: --no-ff makes a merge commit anyway)
    new_head = r.merge(job_wt, "item-a", "mapwise: merge item a")
    # Then
    parents = git(job_wt, "rev-list", "--parents", "-n", "1", new_head).split()
    assert parents == [new_head, base, item_sha]
    assert git(job_wt, "log", "-1", "--format=%s", new_head).strip() == "mapwise: merge item a"
    assert r.rev_parse("mapwise/j/result") == new_head
    assert (job_wt / "a.txt").exists()
    assert r.is_ancestor(item_sha, "mapwise/j/result")
    assert r.unmerged_commits("item-a", "mapwise/j/result") == 0
    assert not r.is_dirty(job_wt)


def test_a_failed_merge_leaves_no_merge_behind(job: tuple[Repo, Path], tmp_path: Path) -> None:
    r, job_wt = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    (tmp_path / "a" / "README.md").write_text("from a\n")
    r.commit_all(tmp_path / "a", "a")
    (job_wt / "README.md").write_text("from job\n")
    before = r.commit_all(job_wt, "job")
    with pytest.raises(GitError, match="CONFLICT"):
        r.merge(job_wt, "item-a", "m")
    assert r.head(job_wt) == before
    assert not r.is_dirty(job_wt)
    assert not (r.common_dir / "worktrees" / "job wt" / "MERGE_HEAD").exists()


def test_abort_leftover_merge_after_a_real_conflicting_merge(
    job: tuple[Repo, Path], tmp_path: Path, git: Git
) -> None:
    r, job_wt = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    (tmp_path / "a" / "README.md").write_text("from a\n")
    r.commit_all(tmp_path / "a", "a")
    (job_wt / "README.md").write_text("from job\n")
    before = r.commit_all(job_wt, "job")
    # Given a merge stopped midway, as a killed one would leave it
    git(job_wt, "merge", "--no-ff", "item-a", check=False)
    merge_head = Path(git(job_wt, "rev-parse", "--git-path", "MERGE_HEAD").strip())
    assert (job_wt / merge_head).exists()
    # When
    assert r.abort_leftover_merge(job_wt) is True
    # Then
    assert not (job_wt / merge_head).exists()
    assert r.head(job_wt) == before
    assert not r.is_dirty(job_wt)
    assert r.abort_leftover_merge(job_wt) is False


def test_abort_leftover_merge_removes_a_stale_index_lock(job: tuple[Repo, Path], git: Git) -> None:
    r, job_wt = job
    lock = job_wt / git(job_wt, "rev-parse", "--git-path", "index.lock").strip()
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    assert r.abort_leftover_merge(job_wt) is True
    assert not lock.exists()


def test_abort_leftover_merge_keeps_a_fresh_index_lock(job: tuple[Repo, Path], git: Git) -> None:
    r, job_wt = job
    lock = job_wt / git(job_wt, "rev-parse", "--git-path", "index.lock").strip()
    lock.write_text("")
    assert r.abort_leftover_merge(job_wt) is False
    assert lock.exists()


def test_abort_leftover_merge_can_discard_a_half_applied_merge(job: tuple[Repo, Path]) -> None:
    r, job_wt = job
    (job_wt / "README.md").write_text("half merged\n")
    (job_wt / "untracked.txt").write_text("kept\n")
    assert r.abort_leftover_merge(job_wt) is False  # changes are kept unless asked
    assert r.abort_leftover_merge(job_wt, discard_changes=True) is True
    assert (job_wt / "README.md").read_text() == "# demo\nline two\n"
    assert (job_wt / "untracked.txt").exists()


def test_delete_branch(job: tuple[Repo, Path], tmp_path: Path) -> None:
    r, _ = job
    r.add_worktree(tmp_path / "a", "item-a", "HEAD")
    commit_change(r, tmp_path / "a", "a.txt")
    r.remove_worktree(tmp_path / "a")
    with pytest.raises(GitError, match="not fully merged"):
        r.delete_branch("item-a")
    assert r.branch_exists("item-a")
    r.delete_branch("item-a", force=True)
    assert not r.branch_exists("item-a")
