"""The states of jobs, phases, items and attempts, as stored and as shown in ``--json``."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands as a whole."""

    RUNNING = "running"  # a live process holds the job's lock
    INTERRUPTED = "interrupted"  # stopped by a signal or a crash; resumable
    FAILED = "failed"  # setup, reduce or the error policy failed it; resumable
    COMPLETED = "completed"  # every phase finished (items may still be in the DLQ)


class Phase(StrEnum):
    """The phase a job is in; a job moves forward through them only."""

    SETUP = "setup"
    MAP = "map"
    REDUCE = "reduce"
    MERGE = "merge"  # a worktree job's `merge:` block, after reduce
    DONE = "done"


class ItemStatus(StrEnum):
    """An item's life: pending -> running -> succeeded, or -> retry wait -> running / dlq.

    The stored and printed value of ``RETRY_WAIT`` is ``"failed"`` (the word of the JSON
    output and of older databases); inside, the name says what the state is.
    """

    PENDING = "pending"  # waiting to run (first time, or its attempt was interrupted)
    RUNNING = "running"  # an attempt is under way
    SUCCEEDED = "succeeded"  # an attempt succeeded; never runs again
    RETRY_WAIT = "failed"  # its last attempt failed; a retry runs once the backoff ends
    MERGING = "merging"  # its attempt succeeded with a commit; waits in the merge queue
    DLQ = "dlq"  # attempts spent: parked in the dead letter queue
    PURGED = "purged"  # taken out of the DLQ by `dlq purge`: given up on, never retried

    @property
    def finished(self) -> bool:
        """The item's work is over: it succeeded or its attempts are spent."""
        return self in (ItemStatus.SUCCEEDED, ItemStatus.DLQ)


class StepStatus(StrEnum):
    """How a setup or reduce step ended, as its phase's progress records it."""

    SUCCEEDED = "succeeded"  # done; a resume goes on after it
    FAILED = "failed"  # the job failed here; a resume runs it again


class AttemptOutcome(StrEnum):
    """How one attempt of an item ended."""

    RUNNING = "running"  # not ended yet (or its process died with the coordinator)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by the job stopping; does not count as an attempt


class ErrorKind(StrEnum):
    """Why an attempt or a step failed."""

    EXIT_CODE = "exit_code"  # the command exited non-zero
    TIMEOUT = "timeout"  # the step or item timeout passed and the group was killed
    SIGNAL = "signal"  # the command died by a signal it did not get from us
    SPAWN_ERROR = "spawn_error"  # the command could not be started
    INTERRUPTED = "interrupted"  # the job was stopped while it ran
    INTERPOLATION = "interpolation"  # a variable could not be resolved for this item
    WORKER_LOST = "worker_lost"  # a distributed executor's workers died running it, repeatedly
    NO_COMMIT = "no_commit"  # a step with commit_required made no commit
    MERGE_CONFLICT = "merge_conflict"  # the item's commit does not merge into the job branch
    WORKSPACE = "workspace"  # its worktree could not be made (a git command failed)
    CAPTURE = "capture"  # the step's output did not fit its capture_format
    AGENT_ERROR = "agent_error"  # the agent said it failed (is_error, a subtype, a budget)


class RunOutcome(StrEnum):
    """How one run (a start or a resume) of a job ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
