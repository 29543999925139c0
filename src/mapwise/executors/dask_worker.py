"""What runs on a Dask worker: one attempt, and the hooks the coordinator calls remotely.

These functions are shipped to workers by reference (this module must be importable
there: install mapwise on the workers). Each attempt registers a cancel event so that the
coordinator can interrupt a job's attempts on every worker with ``client.run``; the
commands themselves run in their own process groups exactly as with the local pool.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from mapwise.domain.records import AttemptResult, AttemptTask
from mapwise.executors.attempt import AttemptConfig, run_attempt
from mapwise.executors.orphans import kill_job_processes, kill_processes_with_env

START_TOPIC = "mapwise-attempt-start"
EXECUTION_VARIABLE = "MAPWISE_EXECUTION_ID"

_lock = threading.Lock()
_cancels: dict[str, set[threading.Event]] = {}


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


def kill_execution(execution_id: str) -> list[int]:
    """Kill what is left of one lost execution of an attempt (its worker died)."""
    return kill_processes_with_env(EXECUTION_VARIABLE, execution_id)


def _announce(task: AttemptTask, execution_id: str) -> None:
    """Tell the coordinator this attempt started here; a second start means a lost one."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(
        START_TOPIC,
        {
            "job_id": task.job_id,
            "attempt_id": task.attempt_id,
            "execution_id": execution_id,
            "worker": worker.address,
            "host": os.uname().nodename,
            "started_at": time.time(),
        },
    )


def run_attempt_on_worker(task: AttemptTask, config: AttemptConfig) -> AttemptResult:
    """The Dask task of one attempt."""
    execution_id = uuid.uuid4().hex
    _announce(task, execution_id)
    task, config = _local_paths(task, config)
    # every command of this execution carries its id, so that if this worker dies the
    # coordinator can find and kill what it leaves behind, on whatever machine
    config = dataclasses.replace(
        config, base_env={**config.base_env, EXECUTION_VARIABLE: execution_id}
    )
    cancel = _register(task.job_id)
    try:
        return run_attempt(task, config, cancel)
    finally:
        _unregister(task.job_id, cancel)
