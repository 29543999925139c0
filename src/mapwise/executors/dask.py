"""The Dask executor: the map phase's attempts run on an existing Dask cluster.

The coordinator stays the single writer of the job's state; workers only run
``run_attempt_on_worker`` and return its result. Facts this builds on:

- each attempt is submitted with ``pure=False`` and a unique key, so identical items
  never merge, and its Dask future is released as soon as its result is handed over, so
  a dying worker never makes Dask recompute a result already recorded;
- nothing on an attempt's way waits for an answer but its one check-in (below): the
  attempts submitted while the client's event loop is busy go to the scheduler together
  in one graph (``_flush``), the client sends at most every ``SEND_INTERVAL``, and a
  worker pushes its report to the coordinator as an event on the client's topic as soon
  as the attempt ends, so the result is not fetched with a request. The task still
  returns the report: if the event is lost (its worker died first), the task's result or
  failure brings the attempt's end, and ``_remote`` hands over whichever comes first;
- ``future.cancel()`` cannot stop a running thread or its subprocess, so interrupts go to
  every worker through ``client.run`` (``interrupt_job``), which ends the commands'
  process groups, and a resume kills leftovers of a dead run everywhere (``kill_job``);
- a worker that dies mid-attempt makes the scheduler run the task again elsewhere. Each
  run puts itself on record at the scheduler (the task's metadata) before it starts a
  command, in one round trip that also reads the runs before it, and the next run kills
  what is left of the earlier ones on every worker before it starts its own
  (``dask_worker``); the result reports them, and the coordinator records each as an
  interrupted attempt (``LostAttempt``). A pushed report that names lost runs is left to
  the task's result, which kills them first. Nothing here relies on a worker's own
  messages for that, as they die with it;
- a task that killed its workers too often fails with ``KilledWorker``: the attempt
  fails with error kind ``worker_lost``; every run of it on record is killed everywhere
  before the failure is handed over (so a retry never runs beside one), and all but the
  last are recorded as lost.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import pickle
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
SEND_INTERVAL = 0.001  # seconds the client's messages to the scheduler may wait at most


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


def _shorten_send_interval(client: Any) -> None:
    """Let the client's messages to the scheduler wait ``SEND_INTERVAL`` at most.

    A client batches what it sends to the scheduler and sends at most once per 10 ms;
    each attempt waits for its submission there, then again for its start, so with few
    attempts in flight that wait is much of an attempt's time. Workers batch theirs per
    2 ms. A client without that attribute (another ``distributed``) keeps its own.
    """
    stream = getattr(client, "scheduler_comm", None)
    if stream is not None and isinstance(getattr(stream, "interval", None), float):
        stream.interval = SEND_INTERVAL


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
        # attempts submitted since the client's loop last sent them to the scheduler
        self._waiting: list[tuple[AttemptTask, AttemptConfig]] = []
        # task key -> its attempt and Dask future, until one of its two ends arrives
        self._remote: dict[str, tuple[AttemptTask, Any]] = {}
        # the client's id is the topic its workers push reports to: the scheduler drops
        # the topic's events when this client goes away
        self._topic = str(self._client.id)
        self._broken: str | None = None

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, events: ExecutorEvents) -> None:
        self._events = events
        _shorten_send_interval(self._client)
        self._client.subscribe_topic(self._topic, self._pushed)

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
            broken = self._broken
            if not broken:
                self._waiting.append((task, config))
                first = len(self._waiting) == 1
        if broken:
            self._report(task, _failed(task, ErrorKind.INTERRUPTED, broken, interrupted=True))
        elif first:  # the attempts submitted until the loop gets to it go in one message
            self._client.loop.add_callback(self._flush)

    def _flush(self) -> None:
        """Send every waiting attempt to the scheduler in one graph (in the client's loop)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        stamp = time.monotonic_ns()
        keys = [f"mapwise-{self.job_id}-{task.attempt_id}-{stamp}" for task, _ in waiting]
        tasks = [task for task, _ in waiting]
        try:
            futures = self._client.map(
                run_attempt_on_worker,
                tasks,
                [config for _, config in waiting],
                [self._topic] * len(waiting),
                key=keys,
                pure=False,
            )
        except Exception as error:  # the client is closed or the cluster is gone
            self._break(f"cannot submit to the Dask scheduler at {self.scheduler}: {error}")
            return
        with self._lock:
            self._remote.update(zip(keys, zip(tasks, futures, strict=True), strict=True))
        for key, task, future in zip(keys, tasks, futures, strict=True):
            future.add_done_callback(functools.partial(self._hand_over, task, key))

    def _pushed(self, event: tuple[float, Any]) -> None:
        """A worker's report sent ahead of its task's result (in the client's loop).

        Handed over at once unless runs of the attempt were lost: those must be killed
        first, which blocks, so the task's result brings them the usual way.
        """
        message = event[1]
        with contextlib.suppress(Exception):  # an odd event: the usual way still works
            key = message["key"]
            report = pickle.loads(message["report"])
            if not isinstance(report, WorkerReport) or report.lost:
                return
            with self._lock:
                remote = self._remote.pop(key, None)
            if remote is None:  # handed over already, or the cluster was lost
                return
            task, future = remote
            future.release()  # never let a dying worker make Dask recompute it
            self._report(task, report.result)

    def _hand_over(self, task: AttemptTask, key: str, done: Any) -> None:
        """The task's own end (in a thread of Dask's): blocking calls to the client are fine."""
        with self._lock:
            if self._remote.pop(key, None) is None:  # its pushed report came first
                return
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
            self._waiting.clear()
            self._remote.clear()
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
            # first, or the scheduler would push this client's own leaving to it, closed
            self._client.unsubscribe_topic(self._topic)
        with contextlib.suppress(Exception):
            self._client.close(timeout=CONNECT_TIMEOUT)
