"""The checks before a worktree job starts: refuse early, with a clear message, create nothing.

Every way worktree mode can fail on a given repository that is known before the first
command runs is refused here as a ``WorkspaceError`` (exit 2), so a job never stops
half set up because of its git: no git or one too old, no work tree, a bare repository,
a ``base`` that names no commit, a job id git cannot use in a branch name, or branches
already in the job's place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import GitError, WorkspaceError
from mapwise.workspace.git import MIN_VERSION, Repo, git_version, run_git
from mapwise.workspace.refnames import job_branch

__all__ = ["WorkspacePlan", "check_repository", "check_workspace"]


@dataclass(frozen=True)
class WorkspacePlan:
    """What the checks found: the repository's top folder, the commit to start from, and
    the job's branch (which does not exist yet)."""

    repo: Path
    base_commit: str
    job_branch: str


def check_workspace(*, repo_dir: Path, base: str | None, job_id: str) -> WorkspacePlan:
    """Check that a worktree job ``job_id`` can run on the repository at ``repo_dir``.

    ``base`` is the ref the job branch starts from (default ``HEAD``). Raises
    ``WorkspaceError`` for the first problem found; reads only, never writes.
    """
    repo, base_commit = check_repository(repo_dir=repo_dir, base=base)
    branch = job_branch(job_id)
    _check_job_id(repo, job_id, branch)
    _check_free(repo, job_id)
    return WorkspacePlan(repo=repo.toplevel, base_commit=base_commit, job_branch=branch)


def check_repository(*, repo_dir: Path, base: str | None) -> tuple[Repo, str]:
    """The checks that need no job: git new enough, a repository with a work tree, and
    ``base`` (default ``HEAD``) naming a commit. The repository and that commit."""
    _check_git()
    repo = Repo(repo_dir)
    return repo, _base_commit(repo, base)


def _check_git() -> None:
    try:
        version = git_version()
    except GitError as exc:
        raise WorkspaceError(f"mapwise's worktree mode needs git: {exc}") from exc
    if version[:2] < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        have = ".".join(map(str, version))
        raise WorkspaceError(
            f"mapwise's worktree mode needs git {need} or newer for "
            f"`git merge-tree --write-tree`; this git is {have}"
        )


def _base_commit(repo: Repo, base: str | None) -> str:
    commit = repo.rev_parse(base or "HEAD")
    if commit is not None:
        return commit
    if base is None:
        raise WorkspaceError(
            f"the repository {repo.toplevel} has no commit yet (HEAD is unborn): "
            "commit something first, or set workspace.base"
        )
    raise WorkspaceError(f"workspace.base {base!r} does not name a commit in {repo.toplevel}")


def _check_job_id(repo: Repo, job_id: str, branch: str) -> None:
    probe = run_git(["check-ref-format", "--branch", branch], cwd=repo.toplevel, check=False)
    if probe.returncode != 0 or "/" in job_id:
        raise WorkspaceError(f"the job id {job_id!r} cannot be part of a git branch name")


def _check_free(repo: Repo, job_id: str) -> None:
    """No branch may sit where the job's go: under ``mapwise/<job_id>/``, or named like one
    of its folders (git cannot have both ``a/b`` and ``a/b/c``)."""
    taken = repo.branches_under(f"mapwise/{job_id}/")
    taken += [b for b in ("mapwise", f"mapwise/{job_id}") if repo.branch_exists(b)]
    if taken:
        shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise WorkspaceError(
            f"branches already exist where job {job_id}'s must go: {shown}; "
            "choose another --job-id, or delete them with `git branch -D` if no work on them "
            "is wanted"
        )
