"""The interface every executor offers the coordinator.

An executor runs attempts somewhere (threads of the local pool, workers of a cluster)
and hands back futures of ``AttemptResult``; it never writes the job's state.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from mapwise.domain.records import AttemptResult, AttemptTask
from mapwise.executors.attempt import AttemptConfig


class Executor(Protocol):
    """Where the attempts of the map phase run."""

    @property
    def slots(self) -> int:
        """How many attempts may run at once."""
        ...

    def submit(self, task: AttemptTask, config: AttemptConfig) -> Future[AttemptResult]:
        """Start one attempt; its future resolves when it ended, however it ended."""
        ...

    def interrupt(self) -> None:
        """Stop running attempts: their process groups get TERM, a grace, then KILL."""
        ...

    def shutdown(self) -> None:
        """Release the executor's resources once no attempt runs."""
        ...
