"""The error policy: whether failures so far should stop the map phase."""

from __future__ import annotations

from dataclasses import dataclass

from mapwise.workflow.model import ErrorPolicy, OnItemFailure

# failure_threshold only applies once this many items have finished, so that one early
# failure in a big job does not stop it.
THRESHOLD_MIN_FINISHED = 10


@dataclass(frozen=True)
class PolicyVerdict:
    """Whether to stop, and the reason to show and record when so."""

    stop: bool
    reason: str = ""


def evaluate_error_policy(
    policy: ErrorPolicy, *, dlq_count: int, finished_count: int, new_dlq: int
) -> PolicyVerdict:
    """Decide after a batch of results; ``new_dlq`` is how many items that batch parked.

    ``max_failures`` stops the phase once the DLQ holds that many items, as prodigy's
    ``failed >= max_failures`` does (src/cook/workflow/error_policy.rs,
    ``should_stop_on_threshold``): ``max_failures: 2`` tolerates one failed item, and
    ``0`` stops at the first. Only a batch that parked an item can trip it.
    """
    if new_dlq <= 0:
        return PolicyVerdict(False)
    if policy.on_item_failure is OnItemFailure.STOP:
        return PolicyVerdict(True, "an item failed and error_policy.on_item_failure is 'stop'")
    if policy.max_failures is not None and dlq_count >= policy.max_failures:
        return PolicyVerdict(
            True,
            f"{dlq_count} items in the DLQ reached error_policy.max_failures "
            f"({policy.max_failures})",
        )
    if (
        policy.failure_threshold is not None
        and finished_count >= THRESHOLD_MIN_FINISHED
        and dlq_count / finished_count > policy.failure_threshold
    ):
        return PolicyVerdict(
            True,
            f"{dlq_count}/{finished_count} finished items failed, above "
            f"error_policy.failure_threshold ({policy.failure_threshold})",
        )
    return PolicyVerdict(False)
