"""Retry decisions for a failed attempt: retry after a delay, or give up to the DLQ."""

from __future__ import annotations

from dataclasses import dataclass

from mapwise.domain.states import ItemStatus
from mapwise.workflow.model import Backoff, RetryPolicy


def compute_backoff(policy: RetryPolicy, failed_attempts: int) -> float:
    """Seconds to wait before the next attempt, after ``failed_attempts`` failures (>= 1)."""
    if failed_attempts < 1:
        return 0.0
    base = policy.initial_delay
    if policy.backoff is Backoff.FIXED:
        delay = base
    elif policy.backoff is Backoff.LINEAR:
        delay = base * failed_attempts
    else:
        exponent = min(failed_attempts - 1, 62)
        delay = base * float(2**exponent)
    return min(delay, policy.max_delay)


@dataclass(frozen=True)
class RetryDecision:
    """What happens to an item after a failed attempt."""

    status: ItemStatus  # RETRY_WAIT (a retry waits out its backoff) or DLQ
    retry_at: float | None  # clock time at which the retry may run (RETRY_WAIT only)


def decide_after_failure(policy: RetryPolicy, failed_attempts: int, now: float) -> RetryDecision:
    """Given the count of counted (not interrupted) failures so far, retry or park in the DLQ."""
    if failed_attempts >= policy.max_attempts:
        return RetryDecision(ItemStatus.DLQ, None)
    return RetryDecision(ItemStatus.RETRY_WAIT, now + compute_backoff(policy, failed_attempts))
