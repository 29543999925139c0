"""Reading a job's state into the reports of ``jobs``, ``status`` and ``dlq``."""

from __future__ import annotations

import statistics
import time

from mapwise.domain.states import ItemStatus, JobStatus
from mapwise.reports import (
    DlqEntry,
    Durations,
    ItemInfo,
    ItemSeconds,
    JobProgress,
    JobStatusReport,
    ResumableJob,
    RunInfo,
)
from mapwise.store.jobstore import JobStore
from mapwise.store.lock import is_locked


def effective_status(stored: JobStatus, locked: bool) -> JobStatus:
    """A job stored as running that no live process holds was interrupted (a crash)."""
    if stored is JobStatus.RUNNING and not locked:
        return JobStatus.INTERRUPTED
    return stored


def is_resumable(status: JobStatus, dlq: int) -> bool:
    """SPEC section 5: interrupted, failed, or completed with items in the DLQ."""
    if status in (JobStatus.INTERRUPTED, JobStatus.FAILED):
        return True
    return status is JobStatus.COMPLETED and dlq > 0


def _estimate(store: JobStore, pending: int, max_parallel: int) -> float | None:
    """Seconds left: pending items times the mean item duration, over the slots."""
    if pending == 0:
        return 0.0
    row = store.conn.execute(
        "SELECT AVG(duration), COUNT(*) FROM items WHERE status IN ('succeeded', 'dlq')"
    ).fetchone()
    if not row[1]:
        return None
    return round(float(row[0]) * pending / max(max_parallel, 1), 1)


def _max_parallel(store: JobStore) -> int:
    option = store.job().options.get("max_parallel")
    return int(option) if option else 1


def summarize(store: JobStore) -> ResumableJob:
    """The listing of one job, from its counts (no per-item work)."""
    job = store.job()
    counts = store.item_counts()
    total = sum(counts.values())
    status = effective_status(job.status, is_locked(store.paths.lock))
    dlq = counts[ItemStatus.DLQ]
    progress = JobProgress.from_counts(
        total, counts[ItemStatus.SUCCEEDED], dlq, counts[ItemStatus.PURGED]
    )
    return ResumableJob(
        job_id=job.job_id,
        workflow_name=job.workflow_name,
        status=status.value,
        resumable=is_resumable(status, dlq),
        started_at=job.created_at,
        updated_at=job.updated_at,
        progress=progress,
        estimated_remaining_seconds=_estimate(store, progress.pending_items, _max_parallel(store)),
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _item_seconds(store: JobStore) -> ItemSeconds:
    rows = store.conn.execute(
        "SELECT duration FROM items WHERE status IN ('succeeded', 'dlq') ORDER BY duration"
    ).fetchall()
    values = [float(r[0]) for r in rows]
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
    row = store.conn.execute("SELECT COALESCE(SUM(duration), 0) FROM attempts").fetchone()
    return Durations(
        wall_seconds=round(wall, 3),
        compute_seconds=round(float(row[0]), 3),
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
        items = tuple(
            ItemInfo(i.item_id, i.status.value, i.attempts, round(i.duration, 6))
            for i in store.items()
        )
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
    )


def dlq_entries(store: JobStore) -> list[DlqEntry]:
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
        )
        for item in store.items(ItemStatus.DLQ)
    ]
