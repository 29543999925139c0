"""The local executor: a bounded pool of threads, each running one attempt at a time.

Each attempt's commands run as subprocesses in their own process groups; the threads
only wait on them, so a pool of threads is enough even for CPU-heavy commands.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from mapwise.domain.records import AttemptResult, AttemptTask
from mapwise.executors.attempt import AttemptConfig, run_attempt


class LocalExecutor:
    """Runs up to ``max_parallel`` attempts at once on this machine."""

    def __init__(self, max_parallel: int) -> None:
        self._slots = max_parallel
        self._cancel = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="mapwise-slot")

    @property
    def slots(self) -> int:
        return self._slots

    def submit(self, task: AttemptTask, config: AttemptConfig) -> Future[AttemptResult]:
        return self._pool.submit(run_attempt, task, config, self._cancel)

    def interrupt(self) -> None:
        self._cancel.set()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
