"""The checks before a worktree job: each refusal with its message, and nothing created."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mapwise.errors import UserError, WorkspaceError
from mapwise.workspace import preflight
from mapwise.workspace.preflight import WorkspacePlan, check_workspace

Git = Callable[..., str]


def snapshot(git: Git, repo: Path) -> tuple[str, str, str, str]:
    """What must not change: branches, worktrees, the checkout's status and HEAD."""
    return (
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        git(repo, "worktree", "list", "--porcelain"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "rev-parse", "HEAD"),
    )


def test_a_good_repository_gives_a_plan_and_creates_nothing(repo: Path, git: Git) -> None:
    (repo / "README.md").write_text("the user's own uncommitted change\n")
    before = snapshot(git, repo)
    plan = check_workspace(repo_dir=repo / "src", base=None, job_id="20240101-abc")
    assert plan == WorkspacePlan(
        repo=repo.resolve(),
        base_commit=git(repo, "rev-parse", "HEAD").strip(),
        job_branch="mapwise/20240101-abc/result",
    )
    assert snapshot(git, repo) == before


def test_base_names_any_commit(repo: Path, git: Git) -> None:
    git(repo, "tag", "v1", "HEAD~1")
    plan = check_workspace(repo_dir=repo, base="v1", job_id="j")
    assert plan.base_commit == git(repo, "rev-parse", "HEAD~1").strip()


def refused(match: str, **kwargs: object) -> None:
    with pytest.raises(WorkspaceError, match=match) as caught:
        check_workspace(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, UserError)
    assert caught.value.exit_code == 2


def test_refuses_an_unknown_base(repo: Path) -> None:
    refused(
        r"workspace.base 'no-such-ref' does not name a commit",
        repo_dir=repo,
        base="no-such-ref",
        job_id="j",
    )


def test_refuses_a_base_that_is_not_a_commit(repo: Path) -> None:
    refused(r"does not name a commit", repo_dir=repo, base="HEAD:README.md", job_id="j")


def test_refuses_an_unborn_head(tmp_path: Path, git: Git) -> None:
    empty = tmp_path / "empty repo"
    empty.mkdir()
    git(empty, "init", "--quiet")
    refused(r"has no commit yet \(HEAD is unborn\)", repo_dir=empty, base=None, job_id="j")


def test_refuses_a_folder_outside_git(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    refused("is not inside a git repository", repo_dir=plain, base=None, job_id="j")


def test_refuses_a_bare_repository(tmp_path: Path, git: Git) -> None:
    git(tmp_path, "init", "--quiet", "--bare", "bare.git")
    refused("is a bare repository", repo_dir=tmp_path / "bare.git", base=None, job_id="j")


def test_refuses_a_branch_already_under_the_jobs_prefix(repo: Path, git: Git) -> None:
    git(repo, "branch", "mapwise/j/item/leftover")
    before = snapshot(git, repo)
    refused(
        r"branches already exist where job j's must go: mapwise/j/item/leftover",
        repo_dir=repo,
        base=None,
        job_id="j",
    )
    assert snapshot(git, repo) == before


@pytest.mark.parametrize("blocking", ["mapwise", "mapwise/j"])
def test_refuses_a_branch_named_like_a_folder_of_the_jobs(
    repo: Path, git: Git, blocking: str
) -> None:
    git(repo, "branch", blocking)
    refused(
        f"branches already exist where job j's must go: {blocking}",
        repo_dir=repo,
        base=None,
        job_id="j",
    )


def test_another_jobs_branches_do_not_matter(repo: Path, git: Git) -> None:
    git(repo, "branch", "mapwise/j10/result")
    assert check_workspace(repo_dir=repo, base=None, job_id="j").job_branch == "mapwise/j/result"


@pytest.mark.parametrize("job_id", ["a..b", "x y", "a/b", "x.lock", "@{"])
def test_refuses_a_job_id_git_cannot_use(repo: Path, job_id: str) -> None:
    refused("cannot be part of a git branch name", repo_dir=repo, base=None, job_id=job_id)


def test_refuses_git_older_than_2_38(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "git_version", lambda: (2, 37, 4))
    refused(
        r"mapwise's worktree mode needs git 2\.38 or newer for `git merge-tree --write-tree`; "
        r"this git is 2\.37\.4",
        repo_dir=repo,
        base=None,
        job_id="j",
    )


def test_refuses_when_there_is_no_git(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    refused(r"worktree mode needs git: git is not installed", repo_dir=repo, base=None, job_id="j")
