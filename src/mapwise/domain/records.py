"""Values that travel between the executors, the engine and the store.

They are plain frozen dataclasses so that a distributed executor can pickle them and
the coordinator, the single writer of the job's state, can persist them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mapwise.domain.states import AttemptOutcome, ErrorKind, ItemStatus
from mapwise.domain.usage import AgentUsage


@dataclass(frozen=True)
class StepRecord:
    """One command that ran (or failed to start), with its real duration."""

    step_index: int  # position in its list (agent_template, setup or reduce)
    label: str  # the step's name, else "shell: ..." / "claude: ..." / "write_file: ...", shortened
    started_at: float  # wall clock, for display
    ended_at: float
    duration: float  # monotonic seconds, recorded for every outcome
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error_kind: ErrorKind | None = None  # None when the step succeeded
    stderr_tail: str = ""
    log_path: str | None = None
    on_failure: bool = False  # True for a step of an on_failure handler
    agent: AgentUsage | None = None  # an agent step's session, cost and tokens
    part: str | None = None  # "workspace.setup" for a worktree's setup steps, else None
    captured: str | None = None  # the value its ``capture:`` took (for a continuation)
    reported: bool = False  # already recorded while the attempt ran (``StepDone``)

    @property
    def ok(self) -> bool:
        return self.error_kind is None


@dataclass(frozen=True)
class StepsOutcome:
    """What a list of steps did: its step records, captures, and the failure if any."""

    steps: tuple[StepRecord, ...]
    captures: dict[str, str]
    error_kind: ErrorKind | None = None  # None when every step succeeded (or was recovered)
    failed_step: int | None = None  # index of the step that failed
    exit_code: int | None = None
    signal: int | None = None
    last_error: str = ""  # one line for tables: "step 2 exited 3: <last stderr line>"
    stderr_tail: str = ""
    log_path: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_kind is None


@dataclass(frozen=True)
class ItemWorkspace:
    """Where an attempt runs in worktree mode, as the coordinator chose it at the claim.

    ``start`` is the commit to start from: the job branch's head at the item's first
    attempt (or after a merge conflict), the item's start commit for a retry after a
    failure. None means the attempt continues the worktree as it was left (after an
    interruption): nothing is reset.
    """

    repo: str  # the repository's top level
    worktree: str  # this item's worktree folder (from the job's pool)
    branch: str  # mapwise/<job_id>/item/<item>
    job_branch: str  # mapwise/<job_id>/result, where the item's commits are merged
    start: str | None
    subdir: str  # the workflow file's folder relative to the repository ("" at its top)


@dataclass(frozen=True)
class AttemptTask:
    """Everything a worker needs to run one attempt of one item."""

    job_id: str
    attempt_id: int
    item_index: int
    item_id: str
    item: Any
    attempt_no: int
    slot: int
    log_path: str
    item_file: str
    env: dict[str, str] = field(default_factory=dict)  # workflow env and captures
    captures: dict[str, str] = field(default_factory=dict)
    workspace: ItemWorkspace | None = None  # worktree mode only
    resume: Continuation | None = None  # where an interrupted attempt stopped
    sessions: dict[int, str] = field(default_factory=dict)  # agent step -> session planned
    budget_usd: float | None = None  # map.max_cost_usd minus what the item spent before


@dataclass(frozen=True)
class Continuation:
    """Where the attempt before stopped, so this one goes on from there (SPEC section 9).

    ``start_at`` is the first template step that did not succeed; the steps before it are
    not run again and their captures come back as ``captures``. When that step is an
    agent step that had a session, ``session`` is resumed instead of started anew.
    """

    start_at: int
    captures: dict[str, str]
    session: str | None = None


@dataclass(frozen=True)
class StepDone:
    """A template step succeeded while its attempt goes on: recorded at once, so that a
    crash continues the attempt after it."""

    attempt_id: int
    item_index: int
    record: StepRecord


@dataclass(frozen=True)
class SessionStarted:
    """An agent named its session while running (Codex's thread id): recorded at once,
    so that a crash can resume it."""

    attempt_id: int
    step_index: int
    session_id: str


Progress = StepDone | SessionStarted


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt ended, as reported by the executor to the coordinator."""

    attempt_id: int
    item_index: int
    attempt_no: int
    slot: int
    host: str
    started_at: float
    ended_at: float
    duration: float
    outcome: StepsOutcome
    interrupted: bool = False
    commit: str | None = None  # worktree mode: the item branch's head to merge, if it moved
    start_commit: str | None = None  # worktree mode: the commit a fresh worktree started at
    in_worktree: bool = False  # worktree mode: the attempt ran in the item's worktree


@dataclass(frozen=True)
class LostAttempt:
    """An execution of an attempt that a distributed executor lost (its worker died).

    The attempt runs again elsewhere under the same attempt record; the lost execution is
    kept as an extra, interrupted attempt so that its time and host stay on record.
    """

    attempt_id: int
    host: str
    started_at: float
    ended_at: float


@dataclass(frozen=True)
class Finished:
    """A finished attempt and the item's next state, as ``mapstate.decide`` chose it.

    The store records it as it is: every decision about the item was made before.
    """

    result: AttemptResult
    item_status: ItemStatus  # SUCCEEDED, RETRY_WAIT, DLQ, or PENDING after an interruption
    retry_at: float | None  # when a retry may run (RETRY_WAIT only)
    counted: bool  # False for an interrupted attempt: it does not use up a retry
    result_json: dict[str, Any] | None  # what reduce sees of a succeeded item
    item_id: str = ""  # for reporting once committed

    @property
    def attempt_outcome(self) -> AttemptOutcome:
        if self.result.interrupted:
            return AttemptOutcome.INTERRUPTED
        if self.result.outcome.ok:
            return AttemptOutcome.SUCCEEDED
        return AttemptOutcome.FAILED


@dataclass(frozen=True)
class MergeTask:
    """An item in the merge queue: its branch's commit, to merge into the job branch."""

    item_index: int
    item_id: str
    attempt_id: int  # the attempt that made the commit
    branch: str
    commit: str
    counted: int  # the item's counted attempts, that one included
    worktree: str | None = None  # the item's worktree (detached once merged)
    attempt_no: int = 0  # the number of the attempt that made the commit (for reports)


@dataclass(frozen=True)
class MergeResult:
    """What the merge queue did with one item (the coordinator decides what follows)."""

    task: MergeTask
    merged: bool  # its commit is on the job branch (merged now, or found merged before)
    conflicts: tuple[str, ...] = ()  # the files that conflict, when it did not merge
    error: str = ""  # git's message, when a merge failed for another reason
    worktree: str | None = None  # a worktree of the item's branch, kept for the user


@dataclass(frozen=True)
class Settled:
    """An item's state after its merge, as ``mapstate.settle`` chose it."""

    task: MergeTask
    item_status: ItemStatus  # SUCCEEDED, RETRY_WAIT (rerun from the new head) or DLQ
    retry_at: float | None
    error_kind: ErrorKind | None
    detail: str  # one line for tables: which files conflicted, or git's error
    conflicts: tuple[str, ...] = ()
    worktree: str | None = None  # in the DLQ: the worktree of its branch, kept for the user
