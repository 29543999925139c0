"""Operations on a stopped job's state: checkpoints, verify, repair, export, import, DLQ.

Each takes the job's lock where it changes the state, so it never races a running job.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mapwise.domain.states import ItemStatus, JobStatus
from mapwise.errors import StateDamagedError, UserError
from mapwise.store import db
from mapwise.store.checkpoint import (
    CheckpointInfo,
    NotACheckpointError,
    checkpoint_files,
    inspect_checkpoints,
    next_sequence,
    read_checkpoint,
    restore_database,
    write_checkpoint,
)
from mapwise.store.integrity import (
    Backup,
    Finding,
    RepairReport,
    quick_verify,
    rebuild_from_checkpoint,
)
from mapwise.store.integrity import repair as repair_state
from mapwise.store.integrity import verify as verify_state
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import JobLock
from mapwise.store.paths import JobPaths, check_job_id, job_paths

if TYPE_CHECKING:
    from mapwise.engine.workspaces import CleanReport


def list_checkpoints(paths: JobPaths) -> list[CheckpointInfo]:
    return inspect_checkpoints(paths.checkpoints)


def verify_job(paths: JobPaths) -> list[Finding]:
    return verify_state(paths)


def ensure_sound(paths: JobPaths) -> None:
    """Refuse to resume a damaged job (exit 4), naming ``verify`` and ``repair``."""
    damage = [f for f in quick_verify(paths) if f.damage]
    if damage:
        found = "; ".join(f"{f.where}: {f.message}" for f in damage[:3])
        raise StateDamagedError(
            f"the state of job {paths.job_id} is damaged ({found}); run `mapwise verify "
            f"{paths.job_id}` for details and `mapwise repair {paths.job_id}` to fix it"
        )


def repair_job(paths: JobPaths) -> RepairReport:
    with JobLock(paths.lock).acquire(paths.job_id):
        return repair_state(paths)


def rewind_to_checkpoint(paths: JobPaths, sequence: int) -> str:
    """``resume --from-checkpoint N``: keep the current state as a backup, restore N.

    Newer checkpoints move into the backup too: they describe a future this job no
    longer has. The caller holds the lock.
    """
    files = dict(checkpoint_files(paths.checkpoints))
    if sequence not in files:
        known = ", ".join(str(n) for n in sorted(files)) or "none"
        raise UserError(f"job {paths.job_id} has no checkpoint {sequence} (it has: {known})")
    read_checkpoint(files[sequence])  # refuse a damaged one before touching anything
    backup = Backup(paths)
    rebuild_from_checkpoint(paths, files[sequence], backup)
    for number, path in files.items():
        if number > sequence:
            backup.keep(path)
    return str(backup.folder)


def export_job(paths: JobPaths, target: Path) -> Path:
    """Write a fresh checkpoint of the job to ``target`` (to move it to another machine)."""
    conn = db.connect(paths.database)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_checkpoint(
            conn, target.parent, paths.job_id, next_sequence(paths.checkpoints), target=target
        )
    finally:
        conn.close()


def import_job(
    source: Path, state_dir: Path, *, job_id: str | None = None, workflow: Path | None = None
) -> JobPaths:
    """Make a job from a checkpoint file; optionally under another id or workflow path."""
    try:
        with source.open("rb") as handle:
            magic = handle.read(2)
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror or exc}") from None
    not_ours = f"{source} is not a mapwise checkpoint (write one with mapwise export)"
    if magic != b"\x1f\x8b":
        raise UserError(not_ours)
    try:
        checkpoint = read_checkpoint(source)
    except NotACheckpointError:
        raise UserError(not_ours) from None
    chosen = check_job_id(job_id or checkpoint.job_id)
    paths = job_paths(state_dir, chosen)
    if paths.root.exists():
        raise UserError(f"job {chosen!r} already exists in {state_dir}; choose --job-id")
    paths.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.root.mkdir(mode=0o700)
    try:
        restore_database(checkpoint, paths.database)
        store = JobStore.open(paths)
        try:
            store.adopt_import(chosen, str(workflow.absolute()) if workflow is not None else None)
        finally:
            store.close()
    except BaseException:
        shutil.rmtree(paths.root, ignore_errors=True)
        raise
    return paths


def dlq_retry(paths: JobPaths, item_ids: Sequence[str] | None) -> int:
    """DLQ items back to pending (all, or those named); the caller resumes the job."""
    with JobLock(paths.lock).acquire(paths.job_id):
        store = JobStore.open(paths)
        try:
            _check_dlq_ids(store, item_ids)
            return store.requeue_dlq(item_ids)
        finally:
            store.close()


def dlq_purge(
    paths: JobPaths, item_ids: Sequence[str] | None, *, force: bool = False
) -> tuple[int, CleanReport | None]:
    """Give up on DLQ items (all, or those named); in worktree mode their worktrees and
    branches go too, except unmerged work without ``force``."""
    with JobLock(paths.lock).acquire(paths.job_id):
        store = JobStore.open(paths)
        try:
            _check_dlq_ids(store, item_ids)
            count = store.purge_dlq(item_ids)
            return count, _clean(store, paths, (ItemStatus.PURGED,), force=force)
        finally:
            store.close()


def clean_job(paths: JobPaths, *, force: bool = False) -> CleanReport:
    """``mapwise clean``: remove the worktrees and branches of a worktree job's DLQ and
    purged items and its pool's free worktrees; a completed job's own worktree too (its
    branch, the result, stays). Unmerged or uncommitted work stays without ``force``."""
    with JobLock(paths.lock).acquire(paths.job_id):
        store = JobStore.open(paths)
        try:
            report = _clean(store, paths, (ItemStatus.DLQ, ItemStatus.PURGED), force=force)
            if report is None:
                raise UserError(f"job {paths.job_id} has no workspace: nothing to clean")
            return report
        finally:
            store.close()


def _clean(
    store: JobStore, paths: JobPaths, statuses: tuple[ItemStatus, ...], *, force: bool
) -> CleanReport | None:
    # git and the workspace code load only for a worktree job (reading commands start fast)
    from mapwise.engine.workspaces import (
        CleanReport,
        JobWorkspace,
        clean_items,
        remove_free_worktrees,
        remove_job_worktree,
    )

    ws = JobWorkspace.from_options(store.job().options, paths)
    if ws is None:
        return None
    removed, kept = clean_items(ws, store.worktree_holders(statuses), force=force)
    store.unbind_worktrees([item.index for item in removed])
    pool = remove_free_worktrees(ws, store)
    job = store.job()
    unfinished = store.item_counts()
    done = job.status is JobStatus.COMPLETED and not unfinished[ItemStatus.DLQ] and not kept
    if ItemStatus.DLQ not in statuses:
        done = False  # dlq purge leaves the job's own worktree alone
    return CleanReport(
        removed=tuple(item.item_id for item in removed),
        kept=tuple(kept),
        pool_removed=pool,
        job_worktree_removed=remove_job_worktree(ws) if done else False,
    )


def _check_dlq_ids(store: JobStore, item_ids: Sequence[str] | None) -> None:
    if not item_ids:
        return
    for item_id in item_ids:
        item = store.item_by_id(item_id)
        if item is None:
            raise UserError(f"job {store.paths.job_id} has no item {item_id!r}")
        if item.status is not ItemStatus.DLQ:
            raise UserError(f"item {item_id!r} is not in the DLQ (it is {item.status.value})")
