"""Worktree mode, the coordinator's side: the job's worktree, the merge queue, clean-up.

The job gets the branch ``mapwise/<job_id>/result`` from the repository's ``HEAD`` (or
``workspace.base``) and a worktree of it under the job's folder; setup and reduce run
there, and every item's commit is merged into it, one merge at a time, by ``MergeWorker``.
Which item merges next, and what a conflict does, are decisions of ``domain.mapstate``;
this module only does the git work and reports what happened.

The user's own checkout is never touched: every write goes to worktrees of the job.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapwise.domain.records import MergeResult, MergeTask
from mapwise.errors import MapwiseError, WorkspaceError
from mapwise.executors.procgroups import kill_pids, pid_alive, processes_in
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import JobPaths
from mapwise.store.records import ItemRecord
from mapwise.store.worktrees import Pool
from mapwise.workflow.model import Workflow
from mapwise.workspace.git import Repo, repo_at, run_git
from mapwise.workspace.preflight import check_workspace

OPTIONS_KEY = "workspace"


@dataclass(frozen=True)
class JobWorkspace:
    """Where a worktree job's repository, branch and worktrees are."""

    repo: Path  # the repository's top folder
    job_branch: str
    job_worktree: Path
    base_commit: str
    subdir: str  # the workflow file's folder relative to the repository ("" at its top)
    pool: Path  # the folder of the item worktrees

    @property
    def base_dir(self) -> Path:
        """Where setup and reduce run: the workflow file's folder in the job worktree."""
        return self.job_worktree / self.subdir if self.subdir else self.job_worktree

    def to_options(self) -> dict[str, Any]:
        return {
            OPTIONS_KEY: {
                "repo": str(self.repo),
                "job_branch": self.job_branch,
                "job_worktree": str(self.job_worktree),
                "base_commit": self.base_commit,
                "subdir": self.subdir,
            }
        }

    @classmethod
    def from_options(cls, options: Mapping[str, Any], paths: JobPaths) -> JobWorkspace | None:
        stored = options.get(OPTIONS_KEY)
        if not stored:
            return None
        return cls(
            repo=Path(stored["repo"]),
            job_branch=stored["job_branch"],
            job_worktree=Path(stored["job_worktree"]),
            base_commit=stored["base_commit"],
            subdir=stored["subdir"],
            pool=paths.root.resolve() / "worktrees",
        )

    def pool_for(self, job_id: str) -> Pool:
        return Pool(folder=str(self.pool), job_id=job_id)


def plan_workspace(workflow: Workflow, base_dir: Path, paths: JobPaths) -> JobWorkspace | None:
    """Check the repository before the job exists (``WorkspaceError``, exit 2)."""
    spec = workflow.workspace
    if not spec.enabled:
        return None
    repo_dir = (base_dir / spec.repo) if spec.repo else base_dir
    plan = check_workspace(repo_dir=repo_dir, base=spec.base, job_id=paths.job_id)
    try:
        subdir = base_dir.resolve().relative_to(plan.repo.resolve()).as_posix()
    except ValueError:
        subdir = ""  # the workflow lives outside the repository: commands run at its top
    folder = paths.root.resolve() / "worktrees"
    return JobWorkspace(
        repo=plan.repo,
        job_branch=plan.job_branch,
        job_worktree=folder / "result",
        base_commit=plan.base_commit,
        subdir="" if subdir == "." else subdir,
        pool=folder,
    )


def create_job_worktree(ws: JobWorkspace) -> None:
    """The job's branch and worktree, made once when the job starts."""
    repo = Repo(ws.repo)
    ws.pool.mkdir(mode=0o700, parents=True, exist_ok=True)
    with repo.write_lock():
        repo.add_worktree(ws.job_worktree, ws.job_branch, ws.base_commit)


def commit_job_worktree(ws: JobWorkspace, message: str) -> str | None:
    """Commit what a setup or reduce step left in the job's worktree (None: nothing)."""
    repo = Repo(ws.repo)
    with repo.write_lock():
        return repo.commit_all(ws.job_worktree, message)


def _stop_leftover_git(ws: JobWorkspace) -> int:
    """Kill the git commands a killed coordinator left working in the job's worktrees,
    and wait for them to go: they would race this run. Their lock files stay behind;
    the calls that meet one clear it (only this job's) or wait it out."""
    stray = processes_in(str(ws.pool), command="git")
    kill_pids(stray)
    deadline = time.monotonic() + 5.0
    while any(pid_alive(pid) for pid in stray) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(stray)


def _clear_ref_locks(ws: JobWorkspace) -> None:
    """Lock files of this job's own branches that a killed git left (no live git of
    the job remains by now); other refs' locks are the user's business."""
    try:
        repo = Repo(ws.repo)
    except MapwiseError:
        return
    folder = repo.common_dir / "refs" / "heads" / Path(ws.job_branch).parent
    for lock in folder.rglob("*.lock") if folder.is_dir() else ():
        lock.unlink(missing_ok=True)


def restore_job_worktree(ws: JobWorkspace, *, anything_merged: bool) -> list[str]:
    """On resume: leftover git commands killed, stale records pruned, a killed merge
    undone, a lost worktree rebuilt.

    A start killed while it made the job's branch and worktree left them half made or
    missing; with nothing merged yet they are simply made again from the base commit.
    """
    notices: list[str] = []
    if killed := _stop_leftover_git(ws):
        notices.append(f"killed {killed} git command(s) a dead run left in its worktrees")
    _clear_ref_locks(ws)
    try:
        repo = Repo(ws.repo)
    except MapwiseError as error:
        raise WorkspaceError(f"the job's repository {ws.repo} is not usable: {error}") from None
    with repo.write_lock():
        repo.prune_worktrees()
        registered = ws.job_worktree.resolve() in repo.worktree_paths()
        if registered and ws.job_worktree.is_dir():
            if repo.abort_leftover_merge(ws.job_worktree, discard_changes=True):
                notices.append("undid a merge or step that the stopped run left half done")
            return notices
        shutil.rmtree(ws.job_worktree, ignore_errors=True)  # a half-made folder
        repo.prune_worktrees()
        if repo.branch_exists(ws.job_branch):
            repo.attach_worktree(ws.job_worktree, ws.job_branch)
            notices.append(f"rebuilt the job's worktree {ws.job_worktree} from its branch")
        elif not anything_merged:
            repo.add_worktree(ws.job_worktree, ws.job_branch, ws.base_commit)
            notices.append("made the job's branch and worktree, which its start left unmade")
        else:
            raise WorkspaceError(
                f"the job's branch {ws.job_branch} is gone from {ws.repo}: the work merged "
                "into it is lost, and the job cannot go on"
            )
    return notices


def _release(repo: Repo, task: MergeTask, worktree: Path | None) -> None:
    """A merged item's branch goes; its worktree, detached, stays for the next item."""
    if worktree is not None and worktree.is_dir():
        run_git(["checkout", "--quiet", "--detach"], cwd=worktree, check=False)
    repo.delete_branch(task.branch, force=True)


def _keep_for_user(repo: Repo, ws: JobWorkspace, task: MergeTask) -> str:
    """A worktree of a conflicting item's branch, for the user to look at and resolve."""
    path = ws.pool / f"dlq-{task.item_index}"
    if path.resolve() not in repo.worktree_paths():
        shutil.rmtree(path, ignore_errors=True)
        repo.prune_worktrees()
        repo.attach_worktree(path, task.branch)
    return str(path)


def merge_one(
    ws: JobWorkspace, task: MergeTask, worktree: Path | None, *, keep_conflicts: bool = False
) -> MergeResult:
    """Merge one item's commit into the job branch; a commit already there is not merged
    again (a crash between the merge and its record). With ``keep_conflicts`` (the item
    goes to the DLQ on a conflict), a worktree of its branch is made for the user."""
    repo = repo_at(str(ws.repo))
    try:
        with repo.write_lock():
            head = repo.head(ws.job_worktree)
            if not repo.is_ancestor(task.commit, head):
                conflicts = repo.merge_conflicts(head, task.commit)
                if conflicts:
                    kept = _keep_for_user(repo, ws, task) if keep_conflicts else None
                    return MergeResult(task, False, tuple(conflicts), worktree=kept)
                repo.merge(ws.job_worktree, task.commit, f"mapwise: merge {task.item_id}")
            if repo.branch_exists(task.branch):
                _release(repo, task, worktree)
    except MapwiseError as error:
        return MergeResult(task, merged=False, error=str(error))
    return MergeResult(task, merged=True)


class MergeWorker:
    """The merge queue's one merge at a time, on a thread of its own."""

    def __init__(
        self,
        ws: JobWorkspace,
        deliver: Callable[[MergeResult | BaseException], None],
        *,
        keep_conflicts: bool = False,
    ) -> None:
        self._ws = ws
        self._deliver = deliver
        self._keep_conflicts = keep_conflicts
        self._inbox: queue.SimpleQueue[MergeTask | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="mapwise-merge", daemon=True)
        self._thread.start()

    def submit(self, task: MergeTask) -> None:
        self._inbox.put(task)

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while (task := self._inbox.get()) is not None:
            try:
                worktree = Path(task.worktree) if task.worktree else None
                result = merge_one(self._ws, task, worktree, keep_conflicts=self._keep_conflicts)
            except BaseException as error:  # a bug: the coordinator raises it
                self._deliver(error)
                return
            self._deliver(result)


def remove_free_worktrees(ws: JobWorkspace, store: JobStore) -> int:
    """At the end of a map phase with every item settled: remove the pool's worktrees
    that no item holds (a DLQ item keeps its worktree). Returns how many went."""
    held = {Path(p) for p in store.held_worktrees()}
    repo = Repo(ws.repo)
    removed = 0
    if not ws.pool.is_dir():
        return 0
    with repo.write_lock():
        for folder in sorted(ws.pool.glob("wt-*")):
            if folder in held:
                continue
            if folder.resolve() in repo.worktree_paths():
                repo.remove_worktree(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        repo.prune_worktrees()
    return removed


@dataclass(frozen=True)
class CleanReport:
    """What ``clean`` (or ``dlq purge``) removed, and what it kept and why."""

    removed: tuple[str, ...]  # item ids whose worktree and branch went
    kept: tuple[tuple[str, str], ...]  # (item id, why) kept for unmerged or uncommitted work
    pool_removed: int = 0
    job_worktree_removed: bool = False


def _unsaved(repo: Repo, ws: JobWorkspace, item: ItemRecord) -> str | None:
    """Why removing an item's worktree and branch would lose work, if it would."""
    if item.worktree and Path(item.worktree).is_dir() and repo.is_dirty(Path(item.worktree)):
        return "its worktree has uncommitted changes"
    if item.branch and repo.branch_exists(item.branch):
        ahead = repo.unmerged_commits(item.branch, ws.job_branch)
        if ahead:
            return f"its branch {item.branch} has {ahead} commit(s) not on {ws.job_branch}"
    return None


def clean_items(
    ws: JobWorkspace, items: list[ItemRecord], *, force: bool
) -> tuple[list[ItemRecord], list[tuple[str, str]]]:
    """Remove items' worktrees and branches; without ``force`` never unmerged work."""
    repo = Repo(ws.repo)
    removed: list[ItemRecord] = []
    kept: list[tuple[str, str]] = []
    with repo.write_lock():
        for item in items:
            why = None if force else _unsaved(repo, ws, item)
            if why is not None:
                kept.append((item.item_id, why))
                continue
            if item.worktree and Path(item.worktree).resolve() in repo.worktree_paths():
                repo.remove_worktree(Path(item.worktree))
            elif item.worktree:
                shutil.rmtree(item.worktree, ignore_errors=True)
            if item.branch and repo.branch_exists(item.branch):
                repo.delete_branch(item.branch, force=True)
            removed.append(item)
        repo.prune_worktrees()
    return removed, kept


def remove_job_worktree(ws: JobWorkspace) -> bool:
    """The job's own worktree (its branch, the result, stays)."""
    if not ws.job_worktree.is_dir():
        return False
    repo = Repo(ws.repo)
    with repo.write_lock():
        repo.remove_worktree(ws.job_worktree)
        repo.prune_worktrees()
    return True
