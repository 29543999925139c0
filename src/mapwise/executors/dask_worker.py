"""What runs on a Dask worker: one attempt, and the hooks the coordinator calls remotely.

These functions are shipped to workers by reference (this module must be importable
there: install mapwise on the workers). Each attempt registers a cancel event so that the
coordinator can interrupt a job's attempts on every worker with ``client.run``; the
commands themselves run in their own process groups exactly as with the local pool.

Each run of an attempt's task puts itself on record at the scheduler before it starts
any command, in the task's metadata (``set_metadata``, a request the scheduler answers,
sent together with the read of the runs already on record: one round trip; the
scheduler drops a task's metadata when it forgets the task). A worker that
dies mid-attempt therefore never leaves a run nobody knows of: the next run of the same
task finds the earlier ones on record, kills what is left of them on every worker before
it starts its own commands, and reports them as lost with its result.

The report goes back twice: pushed at once as an event on the coordinator's topic (no
request: it rides the worker's and the scheduler's message batches), and as the task's
result, which the coordinator fetches only when the event did not come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import pickle
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mapwise.domain.records import AttemptResult, AttemptTask
from mapwise.executors.attempt import AttemptConfig, run_attempt
from mapwise.executors.orphans import kill_job_processes, kill_processes_with_env

EXECUTION_VARIABLE = "MAPWISE_EXECUTION_ID"
RUNS_METADATA = "mapwise-runs"  # under the task's key in the scheduler's task metadata

_lock = threading.Lock()
_cancels: dict[str, set[threading.Event]] = {}


@dataclasses.dataclass(frozen=True)
class Execution:
    """One run of an attempt's Dask task on a worker, as the scheduler has it on record."""

    execution_id: str  # MAPWISE_EXECUTION_ID of the run's commands
    run: int  # the scheduler's id of this dispatch of the task: later runs have larger ones
    worker: str  # the worker's address
    host: str
    started_at: float

    @property
    def where(self) -> str:
        """The attempt's host as recorded and shown: ``hostname (worker address)``."""
        return f"{self.host} ({self.worker})"


@dataclasses.dataclass(frozen=True)
class WorkerReport:
    """What a worker returns for an attempt: its result, and the runs of it that were lost."""

    result: AttemptResult
    execution: Execution  # the run that produced ``result``
    lost: tuple[Execution, ...]  # earlier runs, whose workers died mid-attempt, oldest first


class CheckInError(RuntimeError):
    """The run could not be put on record at the scheduler: it started no command."""


def _register(job_id: str) -> threading.Event:
    event = threading.Event()
    with _lock:
        _cancels.setdefault(job_id, set()).add(event)
    return event


def _unregister(job_id: str, event: threading.Event) -> None:
    with _lock:
        _cancels.get(job_id, set()).discard(event)


def interrupt_job(job_id: str) -> int:
    """Ask every attempt of ``job_id`` on this worker to stop (TERM, grace, KILL)."""
    with _lock:
        events = list(_cancels.get(job_id, ()))
    for event in events:
        event.set()
    return len(events)


def kill_job(job_id: str) -> list[int]:
    """Kill every process of the job's commands on this worker's machine."""
    return kill_job_processes(job_id)


def kill_executions(*execution_ids: str) -> list[int]:
    """Kill what is left on this machine of lost runs of an attempt (their workers died)."""
    return [pid for e in execution_ids for pid in kill_processes_with_env(EXECUTION_VARIABLE, e)]


def _local_paths(task: AttemptTask, config: AttemptConfig) -> tuple[AttemptTask, AttemptConfig]:
    """Use the state dir's paths when this machine can write there, else a local temp dir."""
    try:
        Path(task.item_file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(task.log_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return task, config
    except OSError:
        local = Path(tempfile.gettempdir()) / f"mapwise-{task.job_id}"
        moved = dataclasses.replace(
            task,
            item_file=str(local / "items" / Path(task.item_file).name),
            log_path=str(local / "logs" / f"{task.item_index}-attempt-{task.attempt_no}.log"),
        )
        return moved, dataclasses.replace(config, slots_dir=None)


def runs_on_record(records: dict[str, Any] | None) -> list[Execution]:
    """The runs of a task in its scheduler metadata (``RUNS_METADATA``), oldest first."""
    return sorted((Execution(**r) for r in (records or {}).values()), key=lambda e: e.run)


async def _put_on_record(client: Any, key: str, record: dict[str, Any]) -> Any:
    """Put ``record`` on record under the task's key and read the runs already there, in
    one round trip: both requests go out together. A run's own record is acknowledged
    before it starts a command, and a run of the task starts only once the scheduler has
    dropped the worker of the run before it, so every earlier run that may have started a
    command is on record when this read arrives; the read may or may not see this run's
    own record, which the caller leaves out."""
    scheduler = client.scheduler
    own = [key, RUNS_METADATA, record["execution_id"]]
    earlier, _ = await asyncio.gather(
        scheduler.get_metadata(keys=[key, RUNS_METADATA], default=None),
        scheduler.set_metadata(keys=own, value=record),
    )
    return earlier


def _check_in() -> tuple[Execution, tuple[Execution, ...], str]:
    """Put this run on record at the scheduler; return it and the earlier, lost runs.

    It is a request the scheduler answers, so once this returns the run is known even if
    this worker dies the next instant (a message sent with ``log_event`` waits in the
    worker's batch and dies with it). Then the earlier runs' commands are killed on every
    worker, so that two runs of one attempt never go on at once.
    """
    from distributed import get_client, get_worker

    worker = get_worker()
    try:
        client: Any = get_client()
        key = str(worker.get_current_task())
        execution = Execution(
            execution_id=uuid.uuid4().hex,
            run=_run_id(worker, key),
            worker=worker.address,
            host=_nodename(),
            started_at=time.time(),
        )
        records = client.sync(_put_on_record, client, key, dataclasses.asdict(execution))
        earlier = [e for e in runs_on_record(records) if e.execution_id != execution.execution_id]
        if earlier:
            # a worker that fails to answer is lost too: its machine cannot be reached
            ids = [e.execution_id for e in earlier]
            client.run(kill_executions, *ids, on_error="ignore")
    except Exception as error:
        raise CheckInError(
            f"cannot put the attempt's run on record at the Dask scheduler: "
            f"{type(error).__name__}: {error}"
        ) from error
    return execution, tuple(earlier), key


def _run_id(worker: Any, key: str) -> int:
    """The scheduler's id of this dispatch of the task: a later run of it has a larger one."""
    state = worker.state.tasks.get(key)
    return int(getattr(state, "run_id", 0) or 0)


@functools.cache
def _nodename() -> str:
    return os.uname().nodename


def _push(topic: str | None, key: str, report: WorkerReport) -> None:
    """Send the report to the coordinator at once, ahead of the task's own result.

    The event rides the worker's batched stream and the scheduler's stream to the client,
    so the coordinator needs no request to fetch the result; if it is lost (the worker
    died first), the task's result or its failure still reaches the coordinator the usual
    way, and the coordinator takes whichever comes first.
    """
    if topic is None:
        return
    from distributed import get_worker

    with contextlib.suppress(Exception):  # the slow way still brings the result
        get_worker().log_event(topic, {"key": key, "report": pickle.dumps(report)})


def run_attempt_on_worker(
    task: AttemptTask, config: AttemptConfig, topic: str | None = None
) -> WorkerReport:
    """The Dask task of one attempt; its report also goes to ``topic`` as an event."""
    # the cancel event first: an interrupt that comes while this run checks in counts
    cancel = _register(task.job_id)
    try:
        execution, lost, key = _check_in()
        task, config = _local_paths(task, config)
        # every command of this run carries its id, so that if this worker dies the next
        # run (and the coordinator) can find and kill what it leaves behind
        env = {**config.base_env, EXECUTION_VARIABLE: execution.execution_id}
        config = dataclasses.replace(config, base_env=env)
        result = run_attempt(task, config, cancel)
    finally:
        _unregister(task.job_id, cancel)
    report = WorkerReport(dataclasses.replace(result, host=execution.where), execution, lost)
    _push(topic, key, report)
    return report
