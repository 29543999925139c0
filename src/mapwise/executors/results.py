"""Results of attempts that ended without their runner's own result: made in one place."""

from __future__ import annotations

import time

from mapwise.domain.records import AttemptResult, AttemptTask, StepsOutcome
from mapwise.domain.states import ErrorKind


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
