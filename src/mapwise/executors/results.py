"""Results of attempts that ended without their runner's own result: made in one place."""

from __future__ import annotations

import time

from mapwise.domain.records import AttemptResult, AttemptTask, StepsOutcome
from mapwise.domain.states import ErrorKind
from mapwise.executors.process import CommandResult


def process_fate(result: CommandResult) -> ErrorKind | None:
    """How the process itself ended badly (not started, stopped, timed out, killed by a
    signal), before its exit status or anything it printed is looked at."""
    if result.spawn_error is not None:
        return ErrorKind.SPAWN_ERROR
    if result.interrupted:
        return ErrorKind.INTERRUPTED
    if result.timed_out:
        return ErrorKind.TIMEOUT
    if result.signal is not None:
        return ErrorKind.SIGNAL
    return None


def command_error_kind(result: CommandResult) -> ErrorKind | None:
    """A plain command's error kind: its process's fate, else a non-zero exit status."""
    fate = process_fate(result)
    if fate is not None or result.exit_code == 0:
        return fate
    return ErrorKind.EXIT_CODE


def attempt_failed(
    task: AttemptTask,
    kind: ErrorKind,
    message: str,
    *,
    interrupted: bool = False,
    host: str = "",
    started_at: float | None = None,
) -> AttemptResult:
    """A result for an attempt that ended without its runner's own result.

    For instance its runner raised (a bug, not a command failure), or its worker or
    cluster was lost. ``started_at`` is when it last started, when that is known.
    """
    now = time.time()
    outcome = StepsOutcome(
        steps=(), captures={}, error_kind=kind, last_error=message, stderr_tail=message
    )
    started = now if started_at is None else min(started_at, now)
    return AttemptResult(
        attempt_id=task.attempt_id,
        item_index=task.item_index,
        attempt_no=task.attempt_no,
        slot=task.slot,
        host=host,
        started_at=started,
        ended_at=now,
        duration=now - started,
        outcome=outcome,
        interrupted=interrupted,
    )
