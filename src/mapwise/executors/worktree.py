"""An item's worktree, made ready before an attempt and committed after it (worktree mode).

Runs where the attempt runs (a pool slot, a Dask worker), like the commands themselves.
Every git write goes through the repository's lock (``Repo.write_lock``), because git's
own locks make a second writer fail rather than wait.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mapwise.domain.records import ItemWorkspace
from mapwise.workspace.git import Repo, repo_at, run_git


@dataclass(frozen=True)
class Prepared:
    """A worktree ready for an attempt."""

    path: Path
    base_dir: Path  # where the commands run: the workflow file's folder in this worktree
    fresh: bool  # made or reset for this attempt: ``workspace.setup`` runs in it
    start_commit: str | None  # the commit it was reset to (None when continued)


def _clear_leftovers(repo: Repo, path: Path) -> None:
    """Whatever is in the way of a new worktree at ``path`` (not a worktree of the
    repository): a half-made folder goes, stale records are pruned."""
    if path.exists():
        shutil.rmtree(path)
    repo.prune_worktrees()


READY = "mapwise-ready"  # in a worktree's own git folder: the item it was made ready for


def _gitdir(path: Path) -> Path | None:
    """The worktree's own git folder (its index, HEAD, and mapwise's ready mark)."""
    found = run_git(["rev-parse", "--git-dir"], cwd=path, check=False)
    if found.returncode != 0:
        return None
    gitdir = Path(found.stdout.strip())
    return gitdir if gitdir.is_absolute() else path / gitdir


def _clear_stale_locks(gitdir: Path) -> None:
    """Locks a killed git process left in this worktree's own git folder.

    The worktree is this item's alone, and whatever ran in it before (the item's agent,
    mapwise's commit) was killed before the attempt was handed out again (a resume kills
    a dead run's processes first), so a lock file there can only be stale.
    """
    for name in ("index.lock", "HEAD.lock"):
        (gitdir / name).unlink(missing_ok=True)


def _ready_for(gitdir: Path | None) -> str | None:
    try:
        return (gitdir / READY).read_text() if gitdir is not None else None
    except OSError:
        return None


def mark_ready(ws: ItemWorkspace) -> None:
    """The worktree is made and set up for this item: from now on an interrupted attempt
    continues it as its commands leave it. Before the mark, an interruption met a
    worktree half reset by mapwise, and the next attempt resets it again."""
    gitdir = _gitdir(Path(ws.worktree))
    if gitdir is not None:
        (gitdir / READY).write_text(ws.branch)


def _unmark(path: Path) -> None:
    gitdir = _gitdir(path)
    if gitdir is not None:
        (gitdir / READY).unlink(missing_ok=True)


def prepare(ws: ItemWorkspace) -> Prepared:
    """The item's worktree for this attempt: continued as left, or reset to ``ws.start``.

    Continuing (after an interruption) keeps every uncommitted change; a missing worktree
    is rebuilt from the item's branch. A reset starts clean at the given commit (ignored
    files, such as a linked virtualenv, stay). No lock is held here: the folder and the
    branch are this item's alone, and git's calls lock what other worktrees share.
    """
    repo = repo_at(ws.repo)
    path = Path(ws.worktree)
    base_dir = path / ws.subdir if ws.subdir else path
    # the repository's worktree records, read once: is this folder one, on which branch
    records = repo.worktree_paths() if path.is_dir() else {}
    registered = path.resolve() in records
    gitdir = _gitdir(path) if registered else None
    if gitdir is not None:
        _clear_stale_locks(gitdir)
    if ws.start is None:
        ready = _ready_for(gitdir) == ws.branch
        if ready and records.get(path.resolve()) == ws.branch:
            return Prepared(path, base_dir, False, None)
        if repo.branch_exists(ws.branch):
            if registered:
                repo.remove_worktree(path)
            _clear_leftovers(repo, path)
            repo.attach_worktree(path, ws.branch)
            return Prepared(path, base_dir, True, None)
    start = ws.start or ws.job_branch
    commit = repo.rev_parse(start) or start  # an unknown start: git says what is wrong
    if registered:
        repo.repoint_worktree(path, ws.branch, commit)
    else:
        _clear_leftovers(repo, path)
        repo.add_worktree(path, ws.branch, commit)
    return Prepared(path, base_dir, True, commit)


def finish(ws: ItemWorkspace, item_id: str) -> str | None:
    """After a successful template: commit what is left; the head to merge, if any.

    None when the item's branch holds nothing the job branch lacks: it succeeds at once.
    """
    repo = repo_at(ws.repo)
    path = Path(ws.worktree)
    repo.commit_all(path, f"mapwise: {item_id}")  # locks for the commit itself only
    head = repo.head(path)
    ahead = repo.unmerged_commits(ws.branch, ws.job_branch) > 0
    # the item's work is on its branch now: the worktree (detached) goes back to the pool
    # at once, so items waiting for their merge hold no worktree
    _unmark(path)
    run_git(["checkout", "--quiet", "--detach"], cwd=path)
    if not ahead:
        repo.delete_branch(ws.branch, force=True)  # nothing to merge: the branch goes
    return head if ahead else None


def head(ws: ItemWorkspace) -> str:
    """The worktree's HEAD (``commit_required`` compares it before and after a step)."""
    return repo_at(ws.repo).head(Path(ws.worktree))
