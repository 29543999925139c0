"""The Dask executor: the map phase's attempts run on an existing Dask cluster.

The coordinator stays the single writer of the job's state. Facts this builds on:

- a slot is a Dask actor (``dask_worker.SlotRunner``) on a worker, made when the job
  first needs it and kept: each attempt is one call to its slot's actor, answered with the
  attempt's result. The scheduler places a slot once and is not on an attempt's way
  again: no task, no task metadata, no result to fetch (issue 15, where a task per
  attempt cost 52 ms against 15 ms of command);
- an attempt that finishes a template step before its last (or whose agent names its
  session) answers early with that progress; it is recorded like the local pool's, then
  the slot is asked for the rest. So after a crash of the coordinator, or in the run
  that follows a lost one, the attempt goes on after its finished steps and resumes its
  agent's session (``domain.continuation``) instead of starting over;
- the coordinator picks each run's execution id (``MAPWISE_EXECUTION_ID`` of its
  commands) before it sends the run, so a run whose worker dies is known without any
  message from that worker, which dies with it;
- a slot call fails with a connection error exactly when its worker (or the way to it)
  is lost: the worker's side never raises. Then the run's commands, which outlive their
  worker in process groups of their own, are killed by execution id on every worker
  (``client.run``) before the attempt goes on: so two runs of one attempt never go on at
  once. The lost run is recorded as an interrupted attempt (``LostAttempt``) and the
  attempt runs again on a new slot, up to the scheduler's ``allowed-failures`` lost
  workers; one more and it fails with error kind ``worker_lost`` (Dask's ``KilledWorker``
  rule, kept);
- ``future.cancel()`` cannot stop a running thread or its subprocess, so interrupts go to
  every worker through ``client.run`` (``interrupt_job``), which ends the commands'
  process groups, and a resume kills leftovers of a dead run everywhere (``kill_job``);
- the Dask client's event loop does all the slot work; ``submit`` only hands the attempt
  to it, so the engine never waits on the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from typing import Any

from mapwise.domain.continuation import continued
from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, Progress
from mapwise.domain.states import ErrorKind
from mapwise.errors import ExecutorError
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.base import ExecutorEvents
from mapwise.executors.dask_pool import SlotFailed, SlotLost, SlotPool
from mapwise.executors.dask_slots import Execution, Slot, is_actor_lost, is_transport_loss
from mapwise.executors.dask_worker import (
    SlotAnswer,
    SlotRunner,
    interrupt_job,
    kill_executions,
    kill_job,
)
from mapwise.executors.results import attempt_failed

CONNECT_TIMEOUT = 10.0
WORKER_KILL_SECONDS = 5.0  # for a worker to answer the kill of a lost run
OWN_WORKER_SECONDS = 2.0  # ... for the lost run's own worker, if the scheduler lists it yet
DEFAULT_ALLOWED_FAILURES = 3  # distributed.scheduler.allowed-failures' default
WORKER_FAILED = "a Dask worker could not run the attempt (is the same mapwise installed there?)"
NOT_SENT = "interrupted before it was sent to a Dask worker"


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


def _require_mapwise(client: Any) -> None:
    """Stop before the first slot if a worker cannot import mapwise.

    A slot's actor sent to such a worker would not fail its attempt: the worker cannot
    read the message that carries it, and loses its connection to the scheduler over and
    over. The check itself needs nothing of mapwise on the workers (``exec`` of an import).
    """
    code = f"import {SlotRunner.__module__}"
    try:
        answers = client.run(exec, code, {}, on_error="return")
    except Exception as error:  # the cluster failed between connecting and now
        raise ExecutorError(f"cannot reach the Dask cluster: {error}") from error
    failed = {w: e for w, e in answers.items() if isinstance(e, BaseException)}
    if failed:
        listing = "; ".join(f"{w}: {type(e).__name__}: {e}" for w, e in sorted(failed.items()))
        raise ExecutorError(
            "mapwise cannot be imported on Dask workers (install the same mapwise there, "
            f"then resume): {listing}"
        )


def _allowed_failures(client: Any) -> int:
    """How many lost workers the scheduler allows one task (its ``allowed-failures``)."""

    def read(dask_scheduler: Any) -> int:  # local, so pickled by value: no mapwise needed
        return int(dask_scheduler.allowed_failures)

    return int(client.run_on_scheduler(read))


def _configured_direct() -> bool | None:
    """``distributed.client.direct-to-workers`` when the Dask configuration sets it."""
    import dask.config

    value = dask.config.get("distributed.client.direct-to-workers", None)
    return None if value is None else bool(value)


def _continued(task: AttemptTask, progress: list[Progress], config: AttemptConfig) -> AttemptTask:
    """``task`` as the run after a lost one continues it (``domain.continuation``)."""
    steps = config.steps
    captures = {i: step.capture for i, step in enumerate(steps) if step.capture is not None}
    agents = {i for i, step in enumerate(steps) if step.agent}
    return continued(task, progress, captures=captures, agents=agents)


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


class RunLost(Exception):
    """The slot's worker, or the way to it, was lost while the run was out."""

    def __init__(self, run: Execution, error: BaseException) -> None:
        super().__init__(str(error))
        self.run = run
        self.error = error


class DaskExecutor:
    """Runs up to ``max_parallel`` attempts at once on a Dask cluster, one per slot."""

    def __init__(
        self, scheduler: str, max_parallel: int, job_id: str, job_dir: str | None = None
    ) -> None:
        self.scheduler = scheduler
        self.job_id = job_id
        self.job_dir = job_dir  # MAPWISE_JOB_DIR: the job's leftovers, not a namesake's
        self._slots = max_parallel
        self._client = _client(scheduler)
        try:
            _require_mapwise(self._client)
        except ExecutorError:
            self._client.close()
            raise
        self._loop: asyncio.AbstractEventLoop = self._client.loop.asyncio_loop
        self._lock = threading.Lock()
        self._events: ExecutorEvents | None = None
        # attempts handed out and not yet reported, so a lost cluster can end them all
        self._outstanding: dict[int, AttemptTask] = {}
        self._broken: str | None = None
        self._allowed_failures = DEFAULT_ALLOWED_FAILURES
        # the rest is only touched in the client's event loop
        self._pool = SlotPool(self._client, job_id, direct=_configured_direct())
        self._attempts: set[asyncio.Task[None]] = set()
        self._taking: set[asyncio.Future[Slot]] = set()  # attempts waiting for a slot
        self._stopping = False  # interrupted: no run is sent any more

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, events: ExecutorEvents) -> None:
        self._events = events
        # a scheduler without it (or one that refuses to run a function) keeps Dask's default
        with contextlib.suppress(Exception):
            self._allowed_failures = _allowed_failures(self._client)

    def kill_leftovers(self) -> int:
        """Kill the job's commands a dead run left on any worker's machine."""
        try:
            killed = self._client.run(kill_job, self.job_id, self.job_dir)
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

    def submit(self, task: AttemptTask, config: AttemptConfig) -> None:
        assert self._events is not None, "start() comes before submit()"
        with self._lock:
            self._outstanding[task.attempt_id] = task
            broken = self._broken
        if broken:
            self._report(task, _failed(task, ErrorKind.INTERRUPTED, broken, interrupted=True))
            return
        try:
            self._loop.call_soon_threadsafe(self._begin, task, config)
        except RuntimeError:  # the client's loop is closed: the client is gone
            self._break(f"lost the Dask client's connection to {self.scheduler}")

    def _begin(self, task: AttemptTask, config: AttemptConfig) -> None:
        """Start an attempt's coroutine (in the client's loop), keeping it referenced."""
        running = self._loop.create_task(self._attempt(task, config))
        self._attempts.add(running)
        running.add_done_callback(self._attempts.discard)

    async def _attempt(self, task: AttemptTask, config: AttemptConfig) -> None:
        """Run the attempt on a slot until it ends; hand its end over once."""
        try:
            result = await self._run_until_ended(task, config)
        except SlotFailed as failed:
            result = _failed(task, ErrorKind.SPAWN_ERROR, str(failed), interrupted=False)
        except (Exception, asyncio.CancelledError) as error:  # never leave it unreported
            result = self._explain(task, error, WORKER_FAILED)
        self._report(task, result)

    async def _run_until_ended(self, task: AttemptTask, config: AttemptConfig) -> AttemptResult:
        """Runs of the attempt, one after another while their workers are lost; each run
        goes on from the progress the runs before it sent."""
        lost: list[Execution] = []
        progress: list[Progress] = []
        first = task
        while True:
            if self._broken:
                return _failed(task, ErrorKind.INTERRUPTED, self._broken, interrupted=True)
            if self._stopping:
                return _failed(task, ErrorKind.INTERRUPTED, NOT_SENT, interrupted=True)
            try:
                slot = await self._slot_unless_stopped(frozenset(run.worker for run in lost))
                if slot is None:  # interrupted while it waited for one
                    return _failed(task, ErrorKind.INTERRUPTED, NOT_SENT, interrupted=True)
                run = Execution(uuid.uuid4().hex, slot.worker, slot.where, time.time())
                result: AttemptResult = await self._call(slot, task, config, run, progress)
            except SlotLost:  # it was lost before this run was sent: nothing ran
                continue
            except RunLost as gone:
                task = _continued(first, progress, config)
                if not await self._killed(gone.run):
                    return self._explain(task, gone.error, WORKER_FAILED)
                lost.append(gone.run)
                if len(lost) > self._allowed_failures:
                    return self._killed_workers(task, lost)
                assert self._events is not None
                self._events.attempt_lost(
                    LostAttempt(task.attempt_id, gone.run.where, gone.run.started_at, time.time())
                )
                continue
            self._pool.put_back(slot)
            return result

    async def _slot_unless_stopped(self, avoid: frozenset[str]) -> Slot | None:
        """A slot for the next run, or None when an interrupt came while none was free:
        with every worker gone, a new slot waits for a worker that may never join."""
        idle = self._pool.take_idle()
        if idle is not None:  # the usual case, with no task to make
            return idle
        taking = asyncio.ensure_future(self._pool.make(avoid))
        self._taking.add(taking)
        try:
            return await taking
        except asyncio.CancelledError:
            if self._stopping and taking.cancelled():
                return None
            raise
        finally:
            self._taking.discard(taking)

    def _stop_waiting(self) -> None:
        """An interrupt (in the client's loop): no run is sent any more, and the attempts
        that wait for a slot end now (the runs out end through the workers)."""
        self._stopping = True
        for taking in list(self._taking):
            taking.cancel()

    async def _call(
        self,
        slot: Slot,
        task: AttemptTask,
        config: AttemptConfig,
        run: Execution,
        progress: list[Progress],
    ) -> AttemptResult:
        """One run on ``slot``, its progress forwarded and added to ``progress`` as it
        comes; ``RunLost`` when its worker (or the way to it) is lost."""
        try:
            call = slot.actor.run(task, config, run.execution_id)
        except Exception as error:
            if not is_actor_lost(error):
                raise
            self._pool.drop_worker(slot)  # known lost before anything was sent
            raise SlotLost(str(error)) from error
        try:
            answer: SlotAnswer = await call
            while answer.result is None:
                self._forward(task, answer.progress, progress)
                answer = await slot.actor.more()
        except Exception as error:
            if not is_transport_loss(error):
                self._pool.put_back(slot)
                raise
            self._pool.drop_worker(slot)
            raise RunLost(run, error) from error
        self._forward(task, answer.progress, progress)
        return answer.result

    def _forward(
        self, task: AttemptTask, notes: tuple[Progress, ...], progress: list[Progress]
    ) -> None:
        """Hand a run's progress to the coordinator, while its attempt has not ended (a
        lost cluster ends every attempt at once: nothing of theirs comes after that)."""
        if not notes:
            return
        progress.extend(notes)
        assert self._events is not None
        with self._lock:
            if task.attempt_id in self._outstanding:
                for note in notes:
                    self._events.attempt_progress(note)

    def _killed_workers(self, task: AttemptTask, lost: list[Execution]) -> AttemptResult:
        """The attempt lost more workers than the scheduler allows a task: it fails, named
        after Dask's ``KilledWorker``. Its last run is the failure; the others went on
        record as lost runs as they were lost."""
        message = (
            f"KilledWorker: the item's attempt killed the Dask workers running it "
            f"({len(lost)} lost; the scheduler's allowed-failures is {self._allowed_failures})"
        )
        return _failed(task, ErrorKind.WORKER_LOST, message, interrupted=False, run=lost[-1])

    async def _killed(self, run: Execution) -> bool:
        """Kill what a lost run left, through every worker the scheduler lists.

        The run's commands outlive their worker, and any worker on their machine can kill
        them; its own worker is asked too (the way to it may be all that was lost). Each
        worker gets ``WORKER_KILL_SECONDS`` to answer (its own ``OWN_WORKER_SECONDS``): a
        dead one's address takes Dask's whole connect timeout to fail, and the scheduler
        may list it for a moment yet.
        True once every worker still listed afterwards answered, its own aside; else
        False, and the job stops: a resume kills the job's leftovers everywhere.
        """
        if self._client.status != "running":
            return False
        try:
            listed = list(await self._client.scheduler.ncores())
            answered = await asyncio.gather(
                *(self._kill_on(w, run, own=w == run.worker) for w in listed)
            )
            silent = {w for w, ok in zip(listed, answered, strict=True) if not ok}
            silent.discard(run.worker)
            return not silent or not silent & set(await self._client.scheduler.ncores())
        except Exception:
            return False

    async def _kill_on(self, worker: str, run: Execution, *, own: bool) -> bool:
        """``kill_executions`` of the run through ``worker``; whether it answered in time
        (the run's own worker, most likely dead, is given less)."""
        killing = self._client.run(
            kill_executions, run.execution_id, workers=[worker], asynchronous=True
        )
        try:
            await asyncio.wait_for(killing, OWN_WORKER_SECONDS if own else WORKER_KILL_SECONDS)
        except Exception:
            return False
        return True

    def _explain(self, task: AttemptTask, error: BaseException, what: str) -> AttemptResult:
        """An attempt that raised: the cluster is lost (the job stops), or it failed."""
        name = type(error).__name__
        if self._client.status != "running" or is_transport_loss(error) or "Cancelled" in name:
            reason = f"lost the Dask scheduler at {self.scheduler}: {name} {error}".strip()
            self._break(reason)
            return _failed(task, ErrorKind.INTERRUPTED, self._broken or name, interrupted=True)
        return _failed(task, ErrorKind.SPAWN_ERROR, f"{what}: {name}: {error}", interrupted=False)

    def _report(self, task: AttemptTask, result: AttemptResult) -> None:
        """Hand an attempt's end over once; the first of its own end and a lost cluster wins."""
        with self._lock:
            if self._outstanding.pop(task.attempt_id, None) is None:
                return
        assert self._events is not None
        self._events.attempt_ended(task, result)

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
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing waits in it
            self._loop.call_soon_threadsafe(self._stop_waiting)
        try:
            self._client.run(interrupt_job, self.job_id)
        except Exception as error:  # the cluster may be the thing that failed
            self._break(f"cannot reach the Dask cluster: {error}")

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close(timeout=CONNECT_TIMEOUT)
