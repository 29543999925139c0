"""Rows of the job database as frozen values."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from mapwise.domain.records import Continuation
from mapwise.domain.states import ItemStatus, JobStatus, Phase


@dataclass(frozen=True)
class JobRecord:
    """The job row: identity, frozen workflow, where it stands."""

    job_id: str
    workflow_name: str
    workflow_path: str
    workflow_source: str
    workflow_sha256: str
    status: JobStatus
    phase: Phase
    status_reason: str | None
    created_at: float
    updated_at: float
    input_sha256: str | None
    items_sha256: str | None
    total_items: int | None
    captures: dict[str, str]
    options: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            job_id=row["job_id"],
            workflow_name=row["workflow_name"],
            workflow_path=row["workflow_path"],
            workflow_source=row["workflow_source"],
            workflow_sha256=row["workflow_sha256"],
            status=JobStatus(row["status"]),
            phase=Phase(row["phase"]),
            status_reason=row["status_reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            input_sha256=row["input_sha256"],
            items_sha256=row["items_sha256"],
            total_items=row["total_items"],
            captures=json.loads(row["captures"]),
            options=json.loads(row["options"]),
        )


@dataclass(frozen=True)
class JobHeader:
    """What listing a job needs: cheap to read for a thousand jobs."""

    job_id: str
    workflow_name: str
    status: JobStatus
    created_at: float
    updated_at: float
    max_parallel: int


@dataclass(frozen=True)
class RunRecord:
    """One start or resume of a job."""

    run_no: int
    started_at: float
    ended_at: float | None
    outcome: str
    pid: int
    host: str
    reason: str | None


@dataclass(frozen=True)
class ItemRecord:
    """One frozen item and where it stands."""

    index: int
    item_id: str
    value: Any
    status: ItemStatus
    attempts: int  # counted attempts (interrupted ones do not count)
    retry_at: float | None
    duration: float  # sum of all its attempts' durations
    finished_at: float | None
    error_kind: str | None
    exit_code: int | None
    last_error: str | None
    result: dict[str, Any] | None
    # worktree mode (schema version 2; empty in an older database opened read-only)
    branch: str | None = None
    worktree: str | None = None
    start_commit: str | None = None
    head_commit: str | None = None  # the commit waiting in the merge queue
    merge_seq: int | None = None  # its place in the merge queue
    conflict_files: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ItemRecord:
        extra = _workspace_fields(row) if "branch" in row.keys() else {}  # noqa: SIM118
        return cls(
            index=row["idx"],
            item_id=row["item_id"],
            value=json.loads(row["data"]),
            status=ItemStatus(row["status"]),
            attempts=row["attempts"],
            retry_at=row["retry_at"],
            duration=row["duration"],
            finished_at=row["finished_at"],
            error_kind=row["error_kind"],
            exit_code=row["exit_code"],
            last_error=row["last_error"],
            result=json.loads(row["result"]) if row["result"] else None,
            **extra,
        )


def _workspace_fields(row: sqlite3.Row) -> dict[str, Any]:
    conflicts = row["conflict_files"]
    return {
        "branch": row["branch"],
        "worktree": row["worktree"],
        "start_commit": row["start_commit"],
        "head_commit": row["head_commit"],
        "merge_seq": row["merge_seq"],
        "conflict_files": tuple(json.loads(conflicts)) if conflicts else (),
    }


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of an item, as stored."""

    id: int
    item_index: int
    attempt_no: int
    run_no: int
    slot: int | None
    host: str | None
    started_at: float
    ended_at: float | None
    duration: float | None
    outcome: str
    error_kind: str | None
    exit_code: int | None
    signal: int | None
    stderr_tail: str | None
    log_path: str | None
    resume_from: int | None = None  # schema 3: the step a continued attempt started at

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AttemptRecord:
        return cls(
            id=row["id"],
            item_index=row["item_idx"],
            attempt_no=row["attempt_no"],
            run_no=row["run_no"],
            slot=row["slot"],
            host=row["host"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            duration=row["duration"],
            outcome=row["outcome"],
            error_kind=row["error_kind"],
            exit_code=row["exit_code"],
            signal=row["signal"],
            stderr_tail=row["stderr_tail"],
            log_path=row["log_path"],
            resume_from=row["resume_from"] if "resume_from" in row.keys() else None,  # noqa: SIM118
        )


@dataclass(frozen=True)
class Claim:
    """An item handed to a pool slot: the attempt row is already written."""

    item: ItemRecord
    attempt_id: int
    attempt_no: int
    slot: int
    continues: bool = False  # its last attempt was interrupted: go on where it stopped
    resume: Continuation | None = None  # the steps it skips, the session it resumes
    sessions: dict[int, str] | None = None  # agent step -> the session chosen for it
    budget: float | None = None  # what the item may still spend (map.max_cost_usd)
