"""What a report shows, as plain values read from a job's database."""

from __future__ import annotations

from dataclasses import dataclass

from mapwise.reports import JobStatusReport


@dataclass(frozen=True)
class AttemptSpan:
    """One attempt, as a bar of the timeline."""

    attempt_id: int
    item_id: str
    attempt_no: int
    run_no: int
    host: str
    slot: int
    start: float
    end: float
    outcome: str  # one of OUTCOMES
    error: str | None  # error kind and the attempt's last stderr line, when it failed
    cost: float | None  # what its agents spent, when it had agent steps


@dataclass(frozen=True)
class StepSpan:
    """One step of an attempt (for the trace)."""

    attempt_id: int
    step_index: int
    label: str
    start: float
    end: float
    ok: bool


@dataclass(frozen=True)
class RunSpan:
    """One run of the job: a start or a resume, to its stop."""

    run_no: int
    start: float
    end: float
    outcome: str


@dataclass(frozen=True)
class ItemRow:
    item_id: str
    status: str
    attempts: int
    duration: float
    cost: float | None
    last_error: str | None
    branch: str | None


@dataclass(frozen=True)
class StepStats:
    """One template step's durations over every attempt that ran it."""

    index: int
    label: str
    count: int
    median: float
    p95: float
    max: float


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, read in one go."""

    status: JobStatusReport  # the very numbers of ``mapwise status --json``
    live: bool  # a live process runs the job now
    now: float  # when it was read: the end of attempts still running
    attempts: tuple[AttemptSpan, ...]
    runs: tuple[RunSpan, ...]
    item_durations: tuple[float, ...]  # finished items
    steps: tuple[StepStats, ...]
    cost_points: tuple[tuple[float, float], ...]  # (time, cumulative USD), in time order
    costliest: tuple[tuple[str, float], ...]  # (item id, USD), most first
    items: tuple[ItemRow, ...]  # every DLQ item, then the others up to the cap
    items_left_out: int
    resume_command: str | None


# outcome -> (label, colour, pattern id); Okabe-Ito colours, which colour-blind readers tell
# apart, and a pattern for each so that no outcome is told by colour alone
OUTCOMES: dict[str, tuple[str, str, str]] = {
    "succeeded": ("succeeded", "#009E73", "solid"),
    "failed": ("failed", "#D55E00", "hatch"),
    "timed_out": ("timed out", "#E69F00", "dots"),
    "interrupted": ("interrupted", "#56B4E9", "stripes"),
    "merge_conflict": ("merge conflict", "#CC79A7", "cross"),
    "running": ("running", "#0072B2", "vstripes"),
}
