"""The Dask executor: the map phase's attempts run on an existing Dask cluster.

The coordinator stays the single writer of the job's state; workers only run
``run_attempt_on_worker`` and return its result. Facts this builds on:

- each attempt is submitted with ``pure=False`` and a unique key, so identical items
  never merge, and its Dask future is released as soon as its result is handed over, so
  a dying worker never makes Dask recompute a result already recorded;
- ``future.cancel()`` cannot stop a running thread or its subprocess, so interrupts go to
  every worker through ``client.run`` (``interrupt_job``), which ends the commands'
  process groups, and a resume kills leftovers of a dead run everywhere (``kill_job``);
- a worker that dies mid-attempt makes the scheduler run the task again elsewhere. Each
  run puts itself on record at the scheduler (the task's metadata) before it starts a
  command, and the next run kills what is left of the earlier ones on every worker
  before it starts its own (``dask_worker``); the result reports them, and the
  coordinator records each as an interrupted attempt (``LostAttempt``). Nothing here
  waits for a worker's own messages, which die with it;
- a task that killed its workers too often fails with ``KilledWorker``: the attempt
  fails with error kind ``worker_lost``; every run of it on record is killed everywhere
  before the failure is handed over (so a retry never runs beside one), and all but the
  last are recorded as lost.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt
from mapwise.domain.states import ErrorKind
from mapwise.errors import ExecutorError
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.base import ExecutorEvents
from mapwise.executors.dask_worker import (
    RUNS_METADATA,
    Execution,
    WorkerReport,
    interrupt_job,
    kill_executions,
    kill_job,
    run_attempt_on_worker,
    runs_on_record,
)
from mapwise.executors.results import attempt_failed

CONNECT_TIMEOUT = 10.0


def _client(scheduler: str) -> Any:
    try:
        from distributed import Client
    except ImportError as exc:
        raise ExecutorError(
            "the dask executor needs the dask extra: pip install 'mapwise[dask]'"
        ) from exc
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc


def _failed(
    task: AttemptTask,
    kind: ErrorKind,
    message: str,
    *,
    interrupted: bool,
    run: Execution | None = None,
) -> AttemptResult:
    """An attempt that ended without a worker's result (``run``: where it last ran)."""
    if run is None:
        return attempt_failed(task, kind, message, interrupted=interrupted)
    return attempt_failed(
        task, kind, message, interrupted=interrupted, host=run.where, started_at=run.started_at
    )


def _lost(attempt_id: int, runs: Sequence[Execution]) -> list[LostAttempt]:
    """Every run but the last was lost; each ended, at the latest, when the next began."""
    return [
        LostAttempt(
            attempt_id=attempt_id,
            host=run.where,
            started_at=run.started_at,
            ended_at=max(after.started_at, run.started_at),
        )
        for run, after in itertools.pairwise(runs)
    ]


class DaskExecutor:
    """Runs up to ``max_parallel`` attempts at once on a Dask cluster."""

    def __init__(self, scheduler: str, max_parallel: int, job_id: str) -> None:
        self.scheduler = scheduler
        self.job_id = job_id
        self._slots = max_parallel
        self._client = _client(scheduler)
        self._lock = threading.Lock()
        self._events: ExecutorEvents | None = None
        # attempts handed out and not yet reported, so a lost cluster can end them all
        self._outstanding: dict[int, AttemptTask] = {}
        self._broken: str | None = None

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, events: ExecutorEvents) -> None:
        self._events = events

    def kill_leftovers(self) -> int:
        """Kill the job's commands a dead run left on any worker's machine."""
        try:
            killed = self._client.run(kill_job, self.job_id)
        except Exception as error:  # the cluster failed between connecting and now
            raise ExecutorError(f"cannot reach the Dask cluster: {error}") from error
        return sum(len(pids) for pids in killed.values())

    def sees_folder(self, path: str) -> bool:
        """Ask every worker whether ``path`` is a folder there."""
        try:
            seen = self._client.run(os.path.isdir, path)
        except Exception as error:
            raise ExecutorError(f"cannot reach the Dask cluster: {error}") from error
        return bool(seen) and all(seen.values())

    def _kill_executions(self, runs: Sequence[Execution]) -> None:
        """Kill what lost runs left on every worker (again: a restarted worker may be new)."""
        if runs:
            with contextlib.suppress(Exception):
                ids = [run.execution_id for run in runs]
                self._client.run(kill_executions, *ids, on_error="ignore")

    def _report(self, task: AttemptTask, result: AttemptResult) -> None:
        """Hand an attempt's end over once; the first of a worker's answer and a lost
        cluster wins."""
        with self._lock:
            if self._outstanding.pop(task.attempt_id, None) is None:
                return
        assert self._events is not None
        self._events.attempt_ended(task, result)

    def submit(self, task: AttemptTask, config: AttemptConfig) -> None:
        assert self._events is not None, "start() comes before submit()"
        with self._lock:
            self._outstanding[task.attempt_id] = task
        if self._broken:
            self._report(task, _failed(task, ErrorKind.INTERRUPTED, self._broken, interrupted=True))
            return
        key = f"mapwise-{self.job_id}-{task.attempt_id}-{time.monotonic_ns()}"
        remote = self._client.submit(run_attempt_on_worker, task, config, key=key, pure=False)

        def hand_over(done: Any) -> None:
            # Dask calls this in a thread of its own: blocking calls to the client are fine
            try:
                value, runs, dead = self._outcome(task, key, done)
            finally:
                done.release()  # never let a dying worker make Dask recompute it
            # lost runs are killed before the attempt's end is handed over, so that a retry
            # of the item never runs beside one; then they go on record
            self._kill_executions(dead)
            assert self._events is not None
            for gone in _lost(task.attempt_id, runs):
                self._events.attempt_lost(gone)
            self._report(task, value)

        remote.add_done_callback(hand_over)

    def _outcome(
        self, task: AttemptTask, key: str, done: Any
    ) -> tuple[AttemptResult, list[Execution], list[Execution]]:
        """The attempt's result, its runs on record (oldest first), and the runs to kill."""
        try:
            report = done.result()
        except Exception as error:
            if type(error).__name__ != "KilledWorker":
                return self._explain(task, error), [], []
            # every run of a task that killed its workers was lost, the last one included
            runs = self._runs_on_record(key)
            message = (
                f"KilledWorker: the item's attempt killed the Dask workers running it ({error})"
            )
            last = runs[-1] if runs else None
            failed = _failed(task, ErrorKind.WORKER_LOST, message, interrupted=False, run=last)
            return failed, runs, runs
        if not isinstance(report, WorkerReport):  # never hang on a worker's odd answer
            message = f"a Dask worker answered {type(report).__name__}: is the same mapwise there?"
            return _failed(task, ErrorKind.SPAWN_ERROR, message, interrupted=False), [], []
        return report.result, [*report.lost, report.execution], list(report.lost)

    def _runs_on_record(self, key: str) -> list[Execution]:
        """The runs of a task the scheduler has on record (it forgets them with the task)."""
        try:
            return runs_on_record(self._client.get_metadata([key, RUNS_METADATA], default=None))
        except Exception:  # the scheduler is gone: nothing more can be learnt or killed
            return []

    def _explain(self, task: AttemptTask, error: BaseException) -> AttemptResult:
        name = type(error).__name__
        if self._client.status != "running" or "Cancelled" in name or "CommClosed" in name:
            reason = f"lost the Dask scheduler at {self.scheduler}: {name} {error}".strip()
            self._break(reason)
            return _failed(task, ErrorKind.INTERRUPTED, self._broken or name, interrupted=True)
        return _failed(task, ErrorKind.SPAWN_ERROR, f"{name}: {error}", interrupted=False)

    def _break(self, reason: str) -> None:
        """The cluster is gone: say so once; every attempt still out ends interrupted."""
        with self._lock:
            first = self._broken is None
            self._broken = self._broken or reason
            outstanding = list(self._outstanding.values())
        assert self._events is not None
        if first:
            self._events.executor_broken(self._broken)
        for task in outstanding:
            self._report(task, _failed(task, ErrorKind.INTERRUPTED, self._broken, interrupted=True))

    def interrupt(self) -> None:
        if self._broken:
            self._break(self._broken)
            return
        try:
            self._client.run(interrupt_job, self.job_id)
        except Exception as error:  # the cluster may be the thing that failed
            self._break(f"cannot reach the Dask cluster: {error}")

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close(timeout=CONNECT_TIMEOUT)
