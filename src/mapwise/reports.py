"""The values the API returns and ``--json`` prints: progress, summaries, DLQ entries.

Field names are those of the ``--json`` outputs and the Python API; ``to_json`` gives the
exact JSON shape. ``JobOutcome`` is here too, in a module that imports nothing of mapwise
but the plain ``Cost`` value: ``JobResult`` (``mapwise.types``) carries one, and the
command line's exit-code table names each.
"""

from __future__ import annotations

import datetime as dt
import shlex
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mapwise.domain.usage import Cost


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 UTC text of a Unix time, as in every ``--json`` output."""
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_seconds(seconds: float | None) -> str:
    """``120ms``, ``3.2s``, ``4m05s``, ``2h03m``: short durations for progress lines."""
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def resume_command(job_id: str, state_dir: str | None) -> str:
    """The exact command that resumes a job, for the user to copy."""
    parts = ["mapwise", "resume", job_id]
    if state_dir is not None:
        parts += ["--state-dir", state_dir]
    return shlex.join(parts)


@dataclass(frozen=True)
class JobProgress:
    """Item counts of a job: ``progress`` in ``mapwise jobs --json``."""

    total_items: int
    completed_items: int  # succeeded
    failed_items: int  # in the DLQ
    pending_items: int  # the rest: pending, running, waiting for a retry
    completion_percentage: float
    cost: Cost = field(default_factory=Cost)  # what the job's agents spent so far
    purged_items: int = 0  # given up on with `dlq purge`: neither failed nor pending

    @classmethod
    def from_counts(
        cls, total: int, succeeded: int, dlq: int, purged: int = 0, cost: Cost | None = None
    ) -> JobProgress:
        """Purged items (given up on with ``dlq purge``) are neither failed nor pending.

        They count in ``purged_items``: completed + failed + pending + purged = total.
        """
        percentage = round(100.0 * succeeded / total, 2) if total else 0.0
        pending = max(total - succeeded - dlq - purged, 0)
        return cls(total, succeeded, dlq, pending, percentage, cost or Cost(), purged)

    def to_json(self) -> dict[str, Any]:
        return {
            "total_items": self.total_items,
            "completed_items": self.completed_items,
            "failed_items": self.failed_items,
            "pending_items": self.pending_items,
            "purged_items": self.purged_items,
            "completion_percentage": self.completion_percentage,
        }


@dataclass(frozen=True)
class JobListing:
    """One job as ``mapwise jobs`` lists it, resumable or not (``resumable`` says)."""

    job_id: str
    workflow_name: str
    status: str  # running | interrupted | failed | completed
    resumable: bool
    started_at: float
    updated_at: float
    progress: JobProgress
    estimated_remaining_seconds: float | None
    # when its newest checkpoint was written (API only: not in `mapwise jobs --json`)
    last_checkpoint_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "workflow_name": self.workflow_name,
            "status": self.status,
            "resumable": self.resumable,
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at),
            "progress": self.progress.to_json(),
            "estimated_remaining_seconds": self.estimated_remaining_seconds,
            "cost": self.progress.cost.to_json(),
        }

    @property
    def cost(self) -> Cost:
        return self.progress.cost


# The name the public API has always had for it (``list_resumable_jobs`` returns these);
# kept as an alias because callers import it.
ResumableJob = JobListing


@dataclass(frozen=True)
class RunInfo:
    started_at: float
    ended_at: float | None
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class ItemSeconds:
    mean: float | None
    p50: float | None
    p95: float | None
    max: float | None

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "p50": self.p50, "p95": self.p95, "max": self.max}


@dataclass(frozen=True)
class Durations:
    wall_seconds: float
    compute_seconds: float
    item_seconds: ItemSeconds

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_seconds": self.wall_seconds,
            "compute_seconds": self.compute_seconds,
            "item_seconds": self.item_seconds.to_json(),
        }


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    status: str
    attempts: int
    duration_seconds: float
    branch: str | None = None  # worktree mode
    merge: str | None = None  # worktree mode: waiting | merged | conflict, or none yet
    cost: Cost | None = None  # jobs with agent steps: what the item's agents spent

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "item_id": self.item_id,
            "status": self.status,
            "attempts": self.attempts,
            "duration_seconds": self.duration_seconds,
        }
        if self.branch is not None:
            data |= {"branch": self.branch, "merge": self.merge}
        if self.cost is not None:
            data["cost"] = self.cost.to_json()
        return data


@dataclass(frozen=True)
class WorkspaceInfo:
    """Worktree mode: where the job's work is (``status``)."""

    repo: str
    job_branch: str
    job_worktree: str

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "job_branch": self.job_branch,
            "job_worktree": self.job_worktree,
        }


@dataclass(frozen=True)
class JobStatusReport:
    """``mapwise status --json``: the job's listing plus phase, runs and durations."""

    job: JobListing
    phase: str
    runs: tuple[RunInfo, ...]
    durations: Durations
    dlq_count: int
    checkpoints: int
    reason: str | None
    items: tuple[ItemInfo, ...] | None = None
    workspace: WorkspaceInfo | None = None

    def to_json(self) -> dict[str, Any]:
        data = self.job.to_json()
        data |= {
            "phase": self.phase,
            "runs": [run.to_json() for run in self.runs],
            "durations": self.durations.to_json(),
            "dlq_count": self.dlq_count,
            "checkpoints": self.checkpoints,
        }
        if self.workspace is not None:
            data["workspace"] = self.workspace.to_json()
        if self.items is not None:
            data["items"] = [item.to_json() for item in self.items]
        return data


@dataclass(frozen=True)
class DlqEntry:
    """One item in the dead letter queue: ``mapwise dlq list --json``."""

    item_id: str
    item: Any
    attempts: int
    error_kind: str | None
    exit_code: int | None
    last_error: str | None
    failed_at: float | None
    duration_seconds: float
    cost: Cost | None = None  # jobs with agent steps: what the item's agents spent

    def to_json(self) -> dict[str, Any]:
        data = {
            "item_id": self.item_id,
            "item": self.item,
            "attempts": self.attempts,
            "error_kind": self.error_kind,
            "exit_code": self.exit_code,
            "last_error": self.last_error,
            "failed_at": iso(self.failed_at),
            "duration_seconds": self.duration_seconds,
        }
        if self.cost is not None:
            data["cost"] = self.cost.to_json()
        return data


class JobOutcome(StrEnum):
    """How a run of a job ended, as the engine saw it.

    The command line turns each outcome into its exit code in one table
    (``mapwise.cli.exit_codes``); the engine names what happened and no more.
    """

    COMPLETED = "completed"  # reduce ran; every item succeeded (or was purged)
    COMPLETED_WITH_DLQ = "completed_with_dlq"  # reduce ran; some items are in the DLQ
    FAILED = "failed"  # setup or reduce failed, or the error policy stopped the map phase
    BUDGET_SPENT = "budget_spent"  # the agents spent the job's budget; resumable with more
    INTERRUPTED_BY_SIGINT = "interrupted_by_sigint"  # stopped cleanly after SIGINT; resumable
    INTERRUPTED_BY_SIGTERM = "interrupted_by_sigterm"  # stopped cleanly after SIGTERM; resumable
    EXECUTOR_LOST = "executor_lost"  # the executor could not start or lost its cluster
    NOTHING_TO_RESUME = "nothing_to_resume"  # a resume found the job completed, its DLQ empty

    @classmethod
    def interrupted_by(cls, signum: int | None) -> JobOutcome:
        """The outcome of a clean stop asked for by ``signum`` (no signal counts as SIGINT,
        which is what ``StopController.request`` sends by default)."""
        if signum == signal.SIGTERM:
            return cls.INTERRUPTED_BY_SIGTERM
        return cls.INTERRUPTED_BY_SIGINT
