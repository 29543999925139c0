"""Reading a job's state into the reports of ``jobs``, ``status`` and ``dlq``.

Every report is read from the job's database, which is the only truth: a listing is a
few rows (the job row and the trigger-kept ``item_counts``), so no cache is needed.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from mapwise.domain.states import ErrorKind, ItemStatus, JobStatus
from mapwise.domain.usage import Cost
from mapwise.reports import (
    DlqEntry,
    Durations,
    ItemInfo,
    ItemSeconds,
    JobListing,
    JobProgress,
    JobStatusReport,
    RunInfo,
    WorkspaceInfo,
)
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import is_locked
from mapwise.store.paths import JobPaths
from mapwise.store.records import ItemRecord


def effective_status(stored: JobStatus, locked: bool) -> JobStatus:
    """A job stored as running that no live process holds was interrupted (a crash)."""
    if stored is JobStatus.RUNNING and not locked:
        return JobStatus.INTERRUPTED
    return stored


def is_resumable(status: JobStatus, dlq: int) -> bool:
    """Whether ``resume`` has work: interrupted, failed, or completed with a DLQ."""
    if status in (JobStatus.INTERRUPTED, JobStatus.FAILED):
        return True
    return status is JobStatus.COMPLETED and dlq > 0


def _estimate(store: JobStore, pending: int, max_parallel: int) -> float | None:
    """Seconds left: pending items times the mean item duration, over the slots."""
    if pending == 0:
        return 0.0
    count, seconds = store.finished_seconds()
    if not count:
        return None
    return round(seconds / count * pending / max(max_parallel, 1), 1)


def last_checkpoint_at(paths: JobPaths) -> float | None:
    """The time of the job's newest checkpoint file (a folder listing, no file read)."""
    try:
        with os.scandir(paths.checkpoints) as entries:
            times = [e.stat().st_mtime for e in entries if e.name.endswith(".ckpt")]
    except OSError:
        return None
    return max(times, default=None)


def summarize(store: JobStore) -> JobListing:
    """The listing of one job, from its job row and kept counts (no per-item work)."""
    job = store.job_header()
    counts = store.item_counts()
    progress = JobProgress.from_counts(
        sum(counts.values()),
        counts[ItemStatus.SUCCEEDED],
        counts[ItemStatus.DLQ],
        counts[ItemStatus.PURGED],
        store.job_cost(),
    )
    status = effective_status(job.status, is_locked(store.paths.lock))
    return JobListing(
        job_id=job.job_id,
        workflow_name=job.workflow_name,
        status=status.value,
        resumable=is_resumable(status, progress.failed_items),
        started_at=job.created_at,
        updated_at=job.updated_at,
        progress=progress,
        estimated_remaining_seconds=_estimate(store, progress.pending_items, job.max_parallel),
        last_checkpoint_at=last_checkpoint_at(store.paths),
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _item_seconds(store: JobStore) -> ItemSeconds:
    values = store.finished_durations()
    if not values:
        return ItemSeconds(None, None, None, None)
    return ItemSeconds(
        mean=round(statistics.fmean(values), 6),
        p50=round(_percentile(values, 0.5), 6),
        p95=round(_percentile(values, 0.95), 6),
        max=round(values[-1], 6),
    )


def _durations(store: JobStore, runs: list[RunInfo]) -> Durations:
    now = time.time()
    wall = sum((run.ended_at or now) - run.started_at for run in runs)
    return Durations(
        wall_seconds=round(wall, 3),
        compute_seconds=round(store.compute_seconds(), 3),
        item_seconds=_item_seconds(store),
    )


def status_report(store: JobStore, *, with_items: bool = False) -> JobStatusReport:
    """``mapwise status``: the listing plus phase, runs, durations and optionally items."""
    listing = summarize(store)
    job = store.job()
    runs = [RunInfo(r.started_at, r.ended_at, r.outcome) for r in store.runs()]
    if runs and runs[-1].ended_at is None and listing.status != JobStatus.RUNNING.value:
        # the last run died without ending: show it as interrupted, ended at the last update
        runs[-1] = RunInfo(runs[-1].started_at, job.updated_at, JobStatus.INTERRUPTED.value)
    items = None
    if with_items:
        costs = store.item_costs() if listing.cost.any else None
        items = tuple(_item_info(i, costs) for i in store.items())
    checkpoints = 0
    if store.paths.checkpoints.is_dir():
        checkpoints = sum(1 for _ in store.paths.checkpoints.glob("*.ckpt"))
    return JobStatusReport(
        job=listing,
        phase=job.phase.value,
        runs=tuple(runs),
        durations=_durations(store, runs),
        dlq_count=listing.progress.failed_items,
        checkpoints=checkpoints,
        reason=job.status_reason,
        items=items,
        workspace=_workspace_info(job.options),
    )


def _merge_state(item: ItemRecord) -> str | None:
    """Worktree mode: where an item's commit stands in the merge queue."""
    if item.status is ItemStatus.MERGING:
        return "waiting"
    if item.status is ItemStatus.SUCCEEDED:
        return "merged" if item.head_commit else "nothing to merge"
    if item.error_kind == ErrorKind.MERGE_CONFLICT.value:
        return "conflict"
    return None


def _item_info(item: ItemRecord, costs: dict[int, Cost] | None) -> ItemInfo:
    return ItemInfo(
        item.item_id,
        item.status.value,
        item.attempts,
        round(item.duration, 6),
        branch=item.branch,
        merge=_merge_state(item) if item.branch else None,
        cost=None if costs is None else costs.get(item.index, Cost()),
    )


def _workspace_info(options: dict[str, Any]) -> WorkspaceInfo | None:
    stored = options.get("workspace")
    if not stored:
        return None
    return WorkspaceInfo(stored["repo"], stored["job_branch"], stored["job_worktree"])


def dlq_entries(store: JobStore) -> list[DlqEntry]:
    costs = store.item_costs() if store.job_cost().any else None
    return [
        DlqEntry(
            item_id=item.item_id,
            item=item.value,
            attempts=item.attempts,
            error_kind=item.error_kind,
            exit_code=item.exit_code,
            last_error=item.last_error,
            failed_at=item.finished_at,
            duration_seconds=round(item.duration, 6),
            cost=None if costs is None else costs.get(item.index, Cost()),
        )
        for item in store.items(ItemStatus.DLQ)
    ]
