"""The local executor: a bounded pool of threads, each running one attempt at a time.

Each attempt's commands run as subprocesses in their own process groups; the threads
only wait on them, so a pool of threads is enough even for CPU-heavy commands.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from mapwise.domain.records import AttemptResult, AttemptTask
from mapwise.domain.states import ErrorKind
from mapwise.executors.attempt import AttemptConfig, run_attempt
from mapwise.executors.base import ExecutorEvents
from mapwise.executors.results import attempt_failed


class LocalExecutor:
    """Runs up to ``max_parallel`` attempts at once on this machine."""

    def __init__(self, max_parallel: int) -> None:
        self._slots = max_parallel
        self._cancel = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="mapwise-slot")
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
        events = self._events
        assert events is not None, "start() comes before submit()"

        def report(future: Future[AttemptResult]) -> None:
            try:
                result = future.result()
            except BaseException as error:  # a bug in the runner, not a command failure
                result = attempt_failed(
                    task, ErrorKind.SPAWN_ERROR, f"the attempt could not run: {error!r}"
                )
            events.attempt_ended(task, result)

        progress = events.attempt_progress
        running = self._pool.submit(run_attempt, task, config, self._cancel, progress)
        running.add_done_callback(report)

    def interrupt(self) -> None:
        self._cancel.set()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
