"""The values that cross the API: how to start or resume a job, and how its run ended.

They live here, below both the engine and the API, so that the engine can build them
without importing the API and the API can hand out the very values the engine made.
Only the domain's states and ``JobOutcome`` are imported at run time; the types named in
annotations alone (observers, slot notes) wait for type checkers, which keeps
``import mapwise.types`` free of the engine and the executors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapwise.domain.states import JobStatus, Phase
from mapwise.domain.usage import Cost
from mapwise.reports import JobOutcome

if TYPE_CHECKING:
    from mapwise.engine.events import Observer
    from mapwise.executors.orphans import SlotNote
    from mapwise.workflow.model import WorkspaceSpec


@dataclass(frozen=True)
class StartOptions:
    """How to start a new job."""

    state_dir: Path | None = None
    job_id: str | None = None
    max_parallel: int | None = None  # overrides map.max_parallel
    executor: str | None = None  # "local" or "dask" (default: the workflow's, else local)
    scheduler: str | None = None  # the Dask scheduler's address
    observers: Sequence[Observer] = ()
    install_signal_handlers: bool = True
    max_cost_usd: float | None = None  # the job's budget (overrides error_policy.max_cost_usd)


@dataclass(frozen=True)
class JobResult:
    """How a run of a job ended."""

    job_id: str
    status: JobStatus
    phase: Phase
    total_items: int
    succeeded: int
    dlq: int
    pending: int
    reason: str | None  # words for a person; decide on ``outcome``, never on this
    outcome: JobOutcome
    run_no: int  # 0 when no run was made (nothing to resume)
    result_branch: str | None = None  # worktree mode: the branch that holds the job's work
    cost: Cost = field(default_factory=Cost)  # what the job's agents spent, all runs


@dataclass(frozen=True)
class ResumeOptions:
    """How to resume a job (the options of ``mapwise resume``)."""

    retry_failed: bool = False  # also send the DLQ's items back to pending
    max_parallel: int | None = None
    reload_workflow: bool = False  # use the edited workflow file (items stay frozen)
    keep_workflow: bool = False  # use the frozen copy even though the file changed
    from_checkpoint: int | None = None  # rebuild the state from this checkpoint first
    executor: str | None = None  # "local" or "dask" (default: what the job used)
    scheduler: str | None = None  # a Dask scheduler (default: the one the job used)
    observers: Sequence[Observer] = ()
    install_signal_handlers: bool = True
    max_cost_usd: float | None = None  # a new budget for the job (a higher one goes on)


@dataclass(frozen=True)
class Restored:
    """What a resume found and restored, shown before the work starts."""

    job_id: str
    phase: Phase
    succeeded: int
    dlq: int
    remaining: int
    interrupted_attempts: int
    requeued: int
    run_no: int  # the number this run will have
    spent_seconds: float
    killed_orphans: tuple[SlotNote, ...]
    notices: tuple[str, ...]

    def describe(self) -> str:
        lines = [
            f"resuming job {self.job_id} (run {self.run_no}) in phase {self.phase.value}: "
            f"{self.succeeded} succeeded, {self.dlq} in the DLQ, {self.remaining} remaining; "
            f"{self.interrupted_attempts} interrupted attempt(s) will run again; "
            f"{self.spent_seconds:.1f}s spent so far"
        ]
        if self.requeued:
            lines.append(f"{self.requeued} DLQ item(s) sent back to pending (--retry-failed)")
        for note in self.killed_orphans:
            what = f"item index {note.item_index}" if note.item_index is not None else note.slot
            lines.append(f"killed process group {note.pgid} left running by a dead run ({what})")
        lines += list(self.notices)
        return "\n".join(lines)


@dataclass(frozen=True)
class ReportWritten:
    """What ``write_report`` wrote: the page, and the trace when one was asked for."""

    path: Path
    bytes: int
    attempts: int  # attempts on the timeline
    bars: int  # bars drawn for them (sub-pixel attempts are gathered)
    items: int  # the job's items
    trace_path: Path | None = None
    trace_events: int = 0


@dataclass(frozen=True)
class ItemPreview:
    """One of the first items a workflow would run, as ``validate`` shows it."""

    index: int
    item_id: str
    value: Any  # the item's JSON value


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_workflow`` found: the workflow's shape and the items it would run.

    When setup must run before the input exists, the items cannot be known yet:
    ``items_after_setup`` is true and ``item_count`` is None. ``input_is_command`` says
    that ``map.input`` is a command to run (no file of that name, and not named like
    one), not a file. ``workspace`` is the workflow's workspace when it is a worktree,
    else None.
    """

    name: str
    path: Path
    warnings: tuple[str, ...]
    setup_steps: int
    map_steps: int
    reduce_steps: int
    input: str  # map.input as written
    items_after_setup: bool
    item_count: int | None
    preview: tuple[ItemPreview, ...]  # the first items, in frozen order
    workspace: WorkspaceSpec | None = None
    input_is_command: bool = False
