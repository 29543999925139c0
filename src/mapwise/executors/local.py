"""The local executor: one thread per pool slot, each running one attempt at a time.

Each attempt's commands run as subprocesses in their own process groups; the threads
only wait on them, so a thread per slot is enough even for CPU-heavy commands.

A slot's thread takes its attempts from a queue of its own: the map phase gives a slot
its next attempt only after the last one ended, so the queue holds one at most. That is
the whole hand-off (no future, no callback, no shared work queue), which matters when
commands are short and every step of a hand-off competes for the interpreter lock.
"""

from __future__ import annotations

import queue
import threading

from mapwise.domain.records import AttemptTask
from mapwise.domain.states import ErrorKind
from mapwise.executors.attempt import AttemptConfig, run_attempt
from mapwise.executors.base import ExecutorEvents
from mapwise.executors.results import attempt_failed

_Work = tuple[AttemptTask, AttemptConfig] | None  # None: the pool is shutting down


class LocalExecutor:
    """Runs up to ``max_parallel`` attempts at once on this machine."""

    def __init__(self, max_parallel: int) -> None:
        self._slots = max_parallel
        self._cancel = threading.Event()
        self._queues: list[queue.SimpleQueue[_Work]] = [
            queue.SimpleQueue() for _ in range(max_parallel)
        ]
        self._threads: list[threading.Thread | None] = [None] * max_parallel
        self._events: ExecutorEvents | None = None

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, events: ExecutorEvents) -> None:
        self._events = events

    def kill_leftovers(self) -> int:
        """Nothing to do: resume kills this machine's leftovers before the pool exists."""
        return 0

    def sees_folder(self, path: str) -> bool:
        """This machine: the coordinator checked the folder itself."""
        return True

    def submit(self, task: AttemptTask, config: AttemptConfig) -> None:
        assert self._events is not None, "start() comes before submit()"
        slot = task.slot
        if self._threads[slot] is None:  # started at its first attempt
            thread = threading.Thread(
                target=self._serve, args=(slot,), name=f"mapwise-slot_{slot}", daemon=True
            )
            self._threads[slot] = thread
            thread.start()
        self._queues[slot].put((task, config))

    def _serve(self, slot: int) -> None:
        events = self._events
        assert events is not None
        work = self._queues[slot]
        while (taken := work.get()) is not None:
            task, config = taken
            try:
                result = run_attempt(task, config, self._cancel, events.attempt_progress)
            except BaseException as error:  # a bug in the runner, not a command failure
                result = attempt_failed(
                    task, ErrorKind.SPAWN_ERROR, f"the attempt could not run: {error!r}"
                )
            events.attempt_ended(task, result)

    def interrupt(self) -> None:
        self._cancel.set()

    def shutdown(self) -> None:
        """Let each slot finish its attempt, then end its thread."""
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            if thread is not None:
                thread.join()
