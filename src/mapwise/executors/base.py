"""The contract between the coordinator and every executor, all of it.

An executor runs attempts somewhere (threads of the local pool, workers of a cluster)
and reports what happens through ``ExecutorEvents``; it never writes the job's state.
Every member below exists on every executor, as a no-op where an executor has nothing
to do, so the engine never has to ask an executor what it can do.
"""

from __future__ import annotations

from typing import Protocol

from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, Progress
from mapwise.executors.attempt import AttemptConfig


class ExecutorEvents(Protocol):
    """What an executor tells the coordinator; called from any thread, must not block."""

    def attempt_ended(self, task: AttemptTask, result: AttemptResult) -> None:
        """An attempt ended, however it ended: exactly once per submitted task."""
        ...

    def attempt_lost(self, lost: LostAttempt) -> None:
        """An execution of an attempt died with its worker; the attempt runs again."""
        ...

    def executor_broken(self, reason: str) -> None:
        """The executor cannot run attempts any more (its cluster is gone, say)."""
        ...

    def attempt_progress(self, progress: Progress) -> None:
        """A running attempt finished a step (or an agent named its session): recorded
        at once, so that the attempt continues from there after a crash. Optional for an
        executor: without it a stopped attempt starts over."""
        ...


class Executor(Protocol):
    """Where the attempts of the map phase run."""

    @property
    def slots(self) -> int:
        """How many attempts may run at once."""
        ...

    def start(self, events: ExecutorEvents) -> None:
        """Begin reporting to ``events``; called once, before the first ``submit``."""
        ...

    def kill_leftovers(self) -> int:
        """Kill commands of this job that a dead run left where this executor runs them.

        Returns how many processes were killed; ``ExecutorError`` when the place they run
        cannot be reached. The local pool's leftovers are killed by resume itself, on this
        machine, before any executor exists: there it is a no-op.
        """
        ...

    def sees_folder(self, path: str) -> bool:
        """Whether every place attempts run sees the folder ``path`` (worktree mode needs
        the repository at the same path everywhere)."""
        ...

    def submit(self, task: AttemptTask, config: AttemptConfig) -> None:
        """Start one attempt; its end arrives as ``events.attempt_ended``."""
        ...

    def interrupt(self) -> None:
        """Stop running attempts: their process groups get TERM, a grace, then KILL."""
        ...

    def shutdown(self) -> None:
        """Release the executor's resources once no attempt runs."""
        ...
