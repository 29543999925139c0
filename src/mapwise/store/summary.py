"""Reading a job's state into the reports of ``jobs``, ``status`` and ``dlq``."""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

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
from mapwise.store.paths import JobPaths

SUMMARY_VERSION = 1


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


def _listing(
    stored: dict[str, Any], locked: bool, checkpoint_at: float | None = None
) -> ResumableJob:
    """A listing from stored summary fields, with the status a live lock implies."""
    status = effective_status(JobStatus(stored["status"]), locked)
    progress = JobProgress(**stored["progress"])
    return ResumableJob(
        job_id=stored["job_id"],
        workflow_name=stored["workflow_name"],
        status=status.value,
        resumable=is_resumable(status, progress.failed_items),
        started_at=stored["started_at"],
        updated_at=stored["updated_at"],
        progress=progress,
        estimated_remaining_seconds=stored["estimated_remaining_seconds"],
        last_checkpoint_at=checkpoint_at,
    )


def summary_fields(store: JobStore) -> dict[str, Any]:
    """The fields of a listing as stored: from the job row and the kept counts."""
    job = store.job_header()
    counts = store.item_counts()
    total = sum(counts.values())
    progress = JobProgress.from_counts(
        total, counts[ItemStatus.SUCCEEDED], counts[ItemStatus.DLQ], counts[ItemStatus.PURGED]
    )
    return {
        "version": SUMMARY_VERSION,
        "job_id": job.job_id,
        "workflow_name": job.workflow_name,
        "status": job.status.value,
        "started_at": job.created_at,
        "updated_at": job.updated_at,
        "progress": progress.to_json(),
        "estimated_remaining_seconds": _estimate(store, progress.pending_items, job.max_parallel),
    }


def summarize(store: JobStore) -> ResumableJob:
    """The listing of one job, from its counts (no per-item work)."""
    paths = store.paths
    return _listing(summary_fields(store), is_locked(paths.lock), last_checkpoint_at(paths))


def write_summary_file(store: JobStore) -> None:
    """Refresh ``summary.json``, the file ``mapwise jobs`` reads instead of the database.

    A cache, written atomically but not fsynced: when it is missing, unreadable or older
    than the job's last update, the listing falls back to the database.
    """
    path = store.paths.summary
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(summary_fields(store), handle)
        os.replace(tmp, path)
    except OSError:
        return  # a missing summary only makes listing slower


def read_summary_file(paths: JobPaths) -> ResumableJob | None:
    """The listing from ``summary.json``, or None when it cannot be trusted."""
    try:
        stored = json.loads(paths.summary.read_text())
        if stored.get("version") != SUMMARY_VERSION:
            return None
        return _listing(stored, is_locked(paths.lock), last_checkpoint_at(paths))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _percentile(ordered: list[float], fraction: float) -> float:
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _item_seconds(store: JobStore) -> ItemSeconds:
    # plain tuples, sorted here: sqlite3.Row objects and SQLite's sorter made this most of
    # a status of a big job
    cursor = store.conn.cursor()
    cursor.row_factory = None
    values = sorted(
        float(row[0])
        for row in cursor.execute("SELECT duration FROM items WHERE status IN ('succeeded', 'dlq')")
    )
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
