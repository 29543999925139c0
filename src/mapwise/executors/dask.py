"""The Dask executor: the map phase's attempts run on an existing Dask cluster.

The coordinator stays the single writer of the job's state; workers only run
``run_attempt_on_worker`` and return its result. Facts this builds on:

- each attempt is submitted with ``pure=False`` and a unique key, so identical items
  never merge, and its Dask future is released as soon as its result is handed over, so
  a dying worker never makes Dask recompute a result already recorded;
- ``future.cancel()`` cannot stop a running thread or its subprocess, so interrupts go to
  every worker through ``client.run`` (``interrupt_job``), which ends the commands'
  process groups, and a resume kills leftovers of a dead run everywhere (``kill_job``);
- a worker that dies mid-attempt makes the scheduler run the task again elsewhere; the
  second start of the same attempt is how the coordinator learns that one execution was
  lost, and records it as an interrupted attempt;
- a task that killed its workers too often fails with ``KilledWorker``: the attempt
  fails with error kind ``worker_lost``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, StepsOutcome
from mapwise.domain.states import ErrorKind
from mapwise.errors import ExecutorError
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.dask_worker import (
    START_TOPIC,
    interrupt_job,
    kill_execution,
    kill_job,
    run_attempt_on_worker,
)

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
    task: AttemptTask, kind: ErrorKind, message: str, *, interrupted: bool
) -> AttemptResult:
    now = time.time()
    outcome = StepsOutcome(
        steps=(), captures={}, error_kind=kind, last_error=message, stderr_tail=message
    )
    return AttemptResult(
        attempt_id=task.attempt_id,
        item_index=task.item_index,
        attempt_no=task.attempt_no,
        slot=task.slot,
        host="",
        started_at=now,
        ended_at=now,
        duration=0.0,
        outcome=outcome,
        interrupted=interrupted,
    )


class DaskExecutor:
    """Runs up to ``max_parallel`` attempts at once on a Dask cluster."""

    def __init__(self, scheduler: str, max_parallel: int, job_id: str) -> None:
        self.scheduler = scheduler
        self.job_id = job_id
        self._slots = max_parallel
        _quiet_dask_logs()
        self._client = _client(scheduler)
        _quiet_dask_logs()
        self._lock = threading.Lock()
        self._starts: dict[int, dict[str, Any]] = {}
        self._on_lost: Callable[[LostAttempt], None] | None = None
        self._outstanding: dict[int, tuple[cf.Future[AttemptResult], AttemptTask]] = {}
        self.broken: str | None = None
        self._client.subscribe_topic(START_TOPIC, self._started)

    @property
    def slots(self) -> int:
        return self._slots

    def set_lost_handler(self, handler: Callable[[LostAttempt], None]) -> None:
        self._on_lost = handler

    def kill_leftovers(self) -> int:
        """Kill the job's commands a dead run left on any worker's machine."""
        killed = self._client.run(kill_job, self.job_id)
        return sum(len(pids) for pids in killed.values())

    def _started(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker started an attempt; a second start of one attempt means one was lost."""
        _, message = event
        if message.get("job_id") != self.job_id:
            return
        attempt_id = int(message["attempt_id"])
        with self._lock:
            previous = self._starts.get(attempt_id)
            self._starts[attempt_id] = message
        if previous is None:
            return
        # the lost execution's commands may outlive their worker: kill them everywhere,
        # from a thread (client.run must not be called from the client's event loop)
        execution_id = previous.get("execution_id")
        if execution_id:
            threading.Thread(
                target=self._kill_execution, args=(str(execution_id),), daemon=True
            ).start()
        if self._on_lost is not None:
            self._on_lost(
                LostAttempt(
                    attempt_id=attempt_id,
                    host=f"{previous['host']} ({previous['worker']})",
                    started_at=float(previous["started_at"]),
                    ended_at=float(message["started_at"]),
                )
            )

    def _kill_execution(self, execution_id: str) -> None:
        with contextlib.suppress(Exception):
            self._client.run(kill_execution, execution_id)

    def submit(self, task: AttemptTask, config: AttemptConfig) -> cf.Future[AttemptResult]:
        result: cf.Future[AttemptResult] = cf.Future()
        if self.broken:
            result.set_result(_failed(task, ErrorKind.INTERRUPTED, self.broken, interrupted=True))
            return result
        key = f"mapwise-{self.job_id}-{task.attempt_id}-{time.monotonic_ns()}"
        with self._lock:
            self._outstanding[task.attempt_id] = (result, task)
        remote = self._client.submit(run_attempt_on_worker, task, config, key=key, pure=False)

        def hand_over(done: Any) -> None:
            try:
                value = done.result()
                value = _with_host(value, self._starts.get(task.attempt_id))
            except Exception as error:
                value = self._explain(task, error)
            finally:
                done.release()  # never let a dying worker make Dask recompute it
                with self._lock:
                    self._starts.pop(task.attempt_id, None)
                    self._outstanding.pop(task.attempt_id, None)
            _resolve(result, value)

        remote.add_done_callback(hand_over)
        return result

    def _explain(self, task: AttemptTask, error: BaseException) -> AttemptResult:
        name = type(error).__name__
        if name == "KilledWorker":
            return _failed(
                task,
                ErrorKind.WORKER_LOST,
                f"KilledWorker: the item's attempt killed the Dask workers running it ({error})",
                interrupted=False,
            )
        if self._client.status != "running" or "Cancelled" in name or "CommClosed" in name:
            self._break(f"lost the Dask scheduler at {self.scheduler}: {name} {error}".strip())
            return _failed(task, ErrorKind.INTERRUPTED, self.broken or name, interrupted=True)
        return _failed(task, ErrorKind.SPAWN_ERROR, f"{name}: {error}", interrupted=False)

    def _break(self, reason: str) -> None:
        """The cluster is gone: every attempt still out ends as interrupted, at once."""
        self.broken = self.broken or reason
        with self._lock:
            outstanding = list(self._outstanding.values())
            self._outstanding.clear()
        for future, task in outstanding:
            _resolve(future, _failed(task, ErrorKind.INTERRUPTED, self.broken, interrupted=True))

    def interrupt(self) -> None:
        if self.broken:
            self._break(self.broken)
            return
        try:
            self._client.run(interrupt_job, self.job_id)
        except Exception as error:  # the cluster may be the thing that failed
            self._break(f"cannot reach the Dask cluster: {error}")

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close(timeout=CONNECT_TIMEOUT)


def _quiet_dask_logs() -> None:
    """The client logs a lost scheduler with tracebacks; mapwise reports the loss itself."""
    names = ["distributed", "tornado", "asyncio"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(tuple(names))]
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _resolve(future: cf.Future[AttemptResult], value: AttemptResult) -> None:
    """Set a result once; the first of a worker's answer and a lost cluster wins."""
    with contextlib.suppress(cf.InvalidStateError):
        future.set_result(value)


def _with_host(result: AttemptResult, start: dict[str, Any] | None) -> AttemptResult:
    """Name the worker in the attempt's host, as SPEC section 3 asks for."""
    if start is None:
        return result
    return dataclasses.replace(result, host=f"{start['host']} ({start['worker']})")
