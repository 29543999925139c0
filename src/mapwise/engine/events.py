"""Events the engine publishes; progress displays and the API subscribe to them.

Observers never break the work: an observer that raises is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mapwise.domain.records import StepRecord
from mapwise.domain.states import ItemStatus, Phase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobCreated:
    """A new job exists: its id is taken and its folder made, and nothing has run yet.

    Published once, after every check that can refuse a new job has passed, so that a
    caller can tell the user the id (``job <id>``) exactly when there is a job to name.
    """

    job_id: str


@dataclass(frozen=True)
class JobStarted:
    job_id: str
    run_no: int
    resumed: bool


@dataclass(frozen=True)
class PhaseStarted:
    phase: Phase
    steps: int  # steps of setup or reduce; items of the map phase


@dataclass(frozen=True)
class StepFinished:
    phase: Phase
    step_index: int
    record: StepRecord


@dataclass(frozen=True)
class ItemsFrozen:
    total: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MapProgress:
    """The map phase's counts after a batch of results was committed."""

    total: int
    succeeded: int
    dlq: int
    running: int
    retrying: int  # waiting out a retry's backoff
    done_this_run: int  # items finished (succeeded or DLQ) since this run started
    elapsed: float  # seconds since the map phase of this run started


@dataclass(frozen=True)
class ItemFinished:
    """An item's attempt was recorded: it succeeded, waits for a retry, or is in the DLQ."""

    item_id: str
    status: ItemStatus
    attempt_no: int
    duration: float
    error: str


@dataclass(frozen=True)
class Stopping:
    """A signal asked the job to stop; running commands get a grace period."""

    signal_name: str
    running: int


@dataclass(frozen=True)
class Output:
    """Standard output of a reduce step: the job's result, shown to the user as it comes."""

    phase: Phase
    data: bytes


@dataclass(frozen=True)
class Notice:
    """Something the user should read (a warning, an orphan killed, a policy stop)."""

    text: str


Event = (
    JobCreated
    | JobStarted
    | PhaseStarted
    | StepFinished
    | ItemsFrozen
    | MapProgress
    | ItemFinished
    | Stopping
    | Output
    | Notice
)
Observer = Callable[[Event], None]


class EventBus:
    """Hands each event to every observer; an observer's exception is logged, not raised."""

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self._observers = list(observers)

    def publish(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.exception("progress observer %r failed on %r", observer, event)
