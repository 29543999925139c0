"""What runs on a Dask worker: a job's slots (Dask actors), and the hooks the coordinator
calls remotely.

This module must be importable on the workers (install mapwise there): Dask ships the
actor class and the hooks by reference. A slot is one ``SlotRunner`` actor; the
coordinator calls its ``run`` once per attempt and gets the attempt's result as the
call's answer, straight from the worker, without a Dask task per attempt: the scheduler
places a slot once and is not on an attempt's way again (issue 15). An attempt that
finishes a template step before its last one (or whose agent names its session) answers
early with that progress, and the coordinator, once it has recorded it, asks for the rest
with ``more``: so a crash of the coordinator or the loss of the worker continues the
attempt after its finished steps. A one-step shell template has no such progress and
takes one call.

Each attempt registers a cancel event so that the coordinator can interrupt a job's
attempts on every worker with ``client.run`` (``interrupt_job``); the commands run in
their own process groups exactly as with the local pool, and each carries the run's
``MAPWISE_EXECUTION_ID``, chosen by the coordinator before it sends the run, so that a
run whose worker died is found and killed on every machine (``kill_executions``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mapwise.domain.records import AttemptResult, AttemptTask, Progress
from mapwise.domain.states import ErrorKind
from mapwise.executors.attempt import AttemptConfig, run_attempt
from mapwise.executors.orphans import kill_job_processes, kill_processes_with_env
from mapwise.executors.results import attempt_failed

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


def kill_job(job_id: str, folder: str | None = None) -> list[int]:
    """Kill every process of the job's commands on this worker's machine (``folder``: the
    job's ``MAPWISE_JOB_DIR``, see ``orphans.job_processes``)."""
    return kill_job_processes(job_id, folder)


def kill_executions(*execution_ids: str) -> list[int]:
    """Kill what is left on this machine of lost runs of an attempt (their workers died)."""
    return [pid for e in execution_ids for pid in kill_processes_with_env(EXECUTION_VARIABLE, e)]


def _local_paths(task: AttemptTask, made: set[str]) -> AttemptTask:
    """Use the state dir's paths when this machine can write there, else a local temp dir.

    ``made``: the folders this slot made or found already, so that it makes each once.
    """
    folders = (os.path.dirname(task.item_file), os.path.dirname(task.log_path))
    if all(folder in made for folder in folders):
        return task
    try:
        for folder in folders:
            Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
            made.add(folder)
        return task
    except OSError:
        local = Path(tempfile.gettempdir()) / f"mapwise-{task.job_id}"
        return dataclasses.replace(
            task,
            item_file=str(local / "items" / Path(task.item_file).name),
            log_path=str(local / "logs" / f"{task.item_index}-attempt-{task.attempt_no}.log"),
        )


def run_on_worker(
    task: AttemptTask,
    config: AttemptConfig,
    execution_id: str,
    where: str,
    made: set[str],
    progress: Callable[[Progress], None] | None = None,
) -> AttemptResult:
    """One run of an attempt, in a slot's thread; it never raises.

    Whatever goes wrong here is the attempt's ``spawn_error``: the coordinator takes any
    exception its call raises for the transport's, that is, for a lost worker.
    """
    # the cancel event first: an interrupt that comes while this run sets up counts
    cancel = _register(task.job_id)
    try:
        task = _local_paths(task, made)
        # every command of this run carries its id, so that if this worker dies the
        # coordinator can find and kill what it leaves behind, on any worker of its machine;
        # no slot notes (the local pool's way to find leftovers on the coordinator's machine)
        env = {**config.base_env, EXECUTION_VARIABLE: execution_id}
        config = dataclasses.replace(config, base_env=env, slots_dir=None)
        result = run_attempt(task, config, cancel, progress)
    except Exception as error:  # a bug or a broken install here, not the command's failure
        message = f"the Dask worker could not run the attempt: {type(error).__name__}: {error}"
        result = attempt_failed(task, ErrorKind.SPAWN_ERROR, message)
    finally:
        _unregister(task.job_id, cancel)
    return dataclasses.replace(result, host=where)


@dataclass(frozen=True)
class SlotAnswer:
    """An answer of a slot's ``run`` or ``more``: the progress the attempt sent since the
    last answer, in order, and its result once it ended (None: ask ``more``)."""

    progress: tuple[Progress, ...]
    result: AttemptResult | None


class _Current:
    """The attempt a slot runs now: its thread's future, the progress not yet sent, and
    the future an answer waits on (set by new progress or by the attempt's end)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        start: Callable[[_Current], asyncio.Future[AttemptResult]],
    ) -> None:
        self.loop = loop
        self.progress: list[Progress] = []
        self.woken: asyncio.Future[None] = loop.create_future()
        self.ended = start(self)
        self.ended.add_done_callback(self._wake)

    def report(self, note: Progress) -> None:
        """From the attempt's thread: hand ``note`` to the event loop (in order: the
        thread's result comes after it the same way)."""
        self.loop.call_soon_threadsafe(self._add, note)

    def _add(self, note: Progress) -> None:
        self.progress.append(note)
        self._wake()

    def _wake(self, *_: object) -> None:
        if not self.woken.done():
            self.woken.set_result(None)

    async def answer(self) -> SlotAnswer:
        """The progress so far, or the result with the last of it, whichever comes first."""
        await self.woken
        if self.ended.done():
            return SlotAnswer(tuple(self.progress), self.ended.result())
        progress, self.progress = tuple(self.progress), []
        self.woken = self.loop.create_future()
        return SlotAnswer(progress, None)


class SlotRunner:
    """One slot of a job on a worker (a Dask actor): one attempt at a time, in its thread.

    Its methods are coroutines, so they run in the worker's event loop rather than in the
    worker's single actor thread: several slots on one worker run side by side.
    """

    def __init__(self) -> None:
        from distributed import get_worker

        self._where = f"{os.uname().nodename} ({get_worker().address})"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mapwise-slot")
        self._made: set[str] = set()  # folders of item files and logs made or found
        self._current: _Current | None = None

    async def where(self) -> str:
        """Where this slot runs, as attempts record it: ``hostname (worker address)``."""
        return self._where

    async def run(self, task: AttemptTask, config: AttemptConfig, execution_id: str) -> SlotAnswer:
        """Start one attempt; the answer is its result, or its first progress."""

        def start(current: _Current) -> asyncio.Future[AttemptResult]:
            return current.loop.run_in_executor(
                self._thread,
                run_on_worker,
                task,
                config,
                execution_id,
                self._where,
                self._made,
                current.report,
            )

        self._current = _Current(asyncio.get_running_loop(), start)
        return await self._current.answer()

    async def more(self) -> SlotAnswer:
        """The attempt's next progress, or its result."""
        assert self._current is not None, "more() follows run()"
        return await self._current.answer()
