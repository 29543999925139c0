"""Helpers for the tests that run worktree jobs (``workspace: worktree``) end to end.

A :class:`RepoProject` is a :class:`helpers.project.Project` whose folder is the checkout
of a real git repository (the ``repo`` fixture of ``tests/workspace/conftest.py``): the
workflow and its items are written there, untracked, as a user would, and the job's
state lives outside the repository so that it never shows in the user's
``git status``. Jobs run through the real command line in a subprocess.

The other helpers read what a job left in the repository with plain ``git`` (never
mapwise's own git layer, so that a test checks mapwise against git itself): the merges
on the job branch, the items' commits, the item branches and worktrees left, and a
:class:`Checkout` snapshot of everything a user could lose (status, HEAD, index, stash,
current branch and the bytes of every file) to compare before and after a job.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.project import CliRun, Project, mapreduce


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Plain ``git ARGS`` in ``cwd``, as a user would run it; its stdout."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {list(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def git_ok(cwd: Path, *args: str) -> bool:
    """Whether ``git ARGS`` exits 0."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    return done.returncode == 0


def commit_file(repo: Path, relative: str, text: str, message: str) -> str:
    """Write a file into the checkout and commit it (the user's own commit); the sha."""
    target = repo / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    git(repo, "add", "--", relative)
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def worktree_workflow(
    template: Sequence[Mapping[str, Any] | str],
    *,
    on_conflict: str | None = None,
    workspace_setup: Sequence[Mapping[str, Any] | str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A workflow (see ``helpers.project.mapreduce``) with ``workspace: worktree``; the
    long form when ``on_conflict`` or ``workspace_setup`` is given. Items are identified
    by their ``id`` field."""
    workflow = mapreduce(template, id="${item.id}", **options)
    if on_conflict is None and workspace_setup is None:
        workflow["workspace"] = "worktree"
    else:
        spec: dict[str, Any] = {"kind": "worktree"}
        if on_conflict is not None:
            spec["on_conflict"] = on_conflict
        if workspace_setup is not None:
            spec["setup"] = [{"shell": s} if isinstance(s, str) else s for s in workspace_setup]
        workflow["workspace"] = spec
    return workflow


class RepoProject(Project):
    """A project whose folder is a repository's checkout; its state lives outside it."""

    def __init__(self, repo: Path, state_dir: Path) -> None:
        super().__init__(repo)
        self.state_dir = state_dir

    @property
    def repo(self) -> Path:
        return self.root

    def run_job(self, job_id: str, *extra: str) -> CliRun:
        """``mapwise run wf.yml --state-dir STATE --job-id JOB`` from the checkout."""
        return self.run_cli("--job-id", job_id, *extra)

    def pool(self, job_id: str) -> Path:
        """The folder of the job's worktrees (``result`` and the items' ``wt-N``)."""
        return self.job_dir(job_id) / "worktrees"

    def job_worktree(self, job_id: str) -> Path:
        return self.pool(job_id) / "result"

    def dlq_json(self, job_id: str) -> Any:
        listed = self.inspect("dlq", "list", job_id, "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        return listed.json()


# -- what a job left in the repository ---------------------------------------------------


def job_branch(job_id: str) -> str:
    return f"mapwise/{job_id}/result"


def merge_subjects(repo: Path, job_id: str) -> list[str]:
    """The subjects of the merge commits on the job branch, oldest first."""
    out = git(repo, "log", "--merges", "--reverse", "--format=%s", job_branch(job_id))
    return out.splitlines()


def merged_items(repo: Path, job_id: str) -> list[str]:
    """The item ids of the job branch's ``mapwise: merge <id>`` commits, oldest first."""
    prefix = "mapwise: merge "
    return [s.removeprefix(prefix) for s in merge_subjects(repo, job_id) if s.startswith(prefix)]


def item_commits(repo: Path, job_id: str) -> dict[str, list[str]]:
    """``mapwise: <id>`` commits (not merges) on the job branch: id -> shas, oldest first."""
    out = git(repo, "log", "--no-merges", "--reverse", "--format=%H %s", job_branch(job_id), "--")
    commits: dict[str, list[str]] = {}
    for line in out.splitlines():
        sha, _, subject = line.partition(" ")
        if subject.startswith("mapwise: "):
            commits.setdefault(subject.removeprefix("mapwise: "), []).append(sha)
    return commits


def changed_files(repo: Path, commit: str) -> list[str]:
    """The paths a (non-merge) commit changed, sorted."""
    out = git(repo, "show", "--name-only", "--format=", "-z", commit)
    return sorted(p for p in out.split("\0") if p)


def show(repo: Path, commit: str, path: str) -> str:
    """The content of ``path`` at ``commit`` (``git show COMMIT:PATH``)."""
    return git(repo, "show", f"{commit}:{path}")


def files_at(repo: Path, ref: str) -> list[str]:
    """Every path in the tree of ``ref``, sorted."""
    out = git(repo, "ls-tree", "-r", "-z", "--name-only", ref)
    return sorted(p for p in out.split("\0") if p)


def item_branches(repo: Path, job_id: str) -> list[str]:
    """The job's item branches that exist (``mapwise/<job>/item/*``)."""
    out = git(
        repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/mapwise/{job_id}/item/"
    )
    return sorted(out.splitlines())


def job_refs(repo: Path, job_id: str) -> list[str]:
    """Every ref under ``refs/heads/mapwise/<job>/``."""
    out = git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/mapwise/{job_id}/")
    return sorted(out.splitlines())


def worktrees(repo: Path) -> dict[Path, str | None]:
    """``git worktree list --porcelain``: each worktree's resolved path -> its branch
    (None when detached)."""
    found: dict[Path, str | None] = {}
    path: Path | None = None
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree ")).resolve()
            found[path] = None
        elif line.startswith("branch ") and path is not None:
            found[path] = line.removeprefix("branch refs/heads/")
    return found


def item_worktrees(repo: Path, pool: Path) -> list[Path]:
    """Item worktrees of a job: registered with git or present on disk in its pool
    (every folder of ``pool`` but the job's ``result``)."""
    pool = pool.resolve()
    registered = {p for p in worktrees(repo) if p.parent == pool and p.name != "result"}
    on_disk = (
        {p.resolve() for p in pool.iterdir() if p.name != "result"} if pool.is_dir() else set()
    )
    return sorted(registered | on_disk)


def fsck(repo: Path) -> subprocess.CompletedProcess[str]:
    """``git fsck --no-progress`` (its exit status and output)."""
    return subprocess.run(
        ["git", "fsck", "--no-progress"], cwd=repo, capture_output=True, text=True, check=False
    )


# -- the user's checkout -------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """Everything of a user's checkout a job must leave as it was."""

    status: str  # git status --porcelain=v1 -z --untracked-files=all
    head: str
    branch: str
    index: str  # git ls-files --stage: every index entry
    staged: str  # git diff --cached: what the user staged
    stash: str  # git stash list, with the stashes' shas
    files: Mapping[str, bytes]  # every file outside .git, by relative path

    @classmethod
    def of(cls, repo: Path) -> Checkout:
        files: dict[str, bytes] = {}
        for folder, dirs, names in os.walk(repo):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in names:
                path = Path(folder) / name
                files[path.relative_to(repo).as_posix()] = path.read_bytes()
        return cls(
            status=git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all"),
            head=git(repo, "rev-parse", "HEAD").strip(),
            branch=git(repo, "branch", "--show-current").strip(),
            index=git(repo, "ls-files", "--stage"),
            staged=git(repo, "diff", "--cached"),
            stash=git(repo, "stash", "list", "--format=%H %gd %s"),
            files=files,
        )


def error_kinds(project: Project, job_id: str, item_id: str) -> list[str | None]:
    """The ``error_kind`` of each of an item's attempts, in attempt order."""
    return [a["error_kind"] for a in project.db(job_id).attempts(item_id)]


def conflict_files(project: Project, job_id: str, item_id: str) -> list[str]:
    """The item's recorded conflicting files (the items table's JSON list)."""
    stored = project.db(job_id).item(item_id)["conflict_files"]
    assert stored, f"no conflict files recorded for {item_id!r}"
    files = json.loads(stored)
    assert isinstance(files, list)
    return files
