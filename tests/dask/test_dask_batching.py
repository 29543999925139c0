"""The Dask executor's own way to and from the cluster, through its API on the session's
cluster: attempts submitted in a burst go to the scheduler in one message, and each
attempt's end is handed over exactly once, whichever of its two ways comes first (the
report its worker pushes as an event, or the task's own result).
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers.jobs import WAIT_SECONDS
from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, Progress
from mapwise.domain.states import ErrorKind
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.dask import DaskExecutor
from mapwise.executors.dask_worker import Execution, WorkerReport
from mapwise.executors.results import attempt_failed
from mapwise.workflow.model import Step

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

BURST = 24


@dataclass
class Recorder:
    """The coordinator's side of the contract: what the executor told it, in order."""

    expected: int
    ended: list[tuple[AttemptTask, AttemptResult]] = field(default_factory=list)
    lost: list[LostAttempt] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    all_ended: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt_ended(self, task: AttemptTask, result: AttemptResult) -> None:
        with self.lock:
            self.ended.append((task, result))
            if len(self.ended) >= self.expected:
                self.all_ended.set()

    def attempt_lost(self, lost: LostAttempt) -> None:
        self.lost.append(lost)

    def executor_broken(self, reason: str) -> None:
        self.broken.append(reason)

    def attempt_progress(self, progress: Progress) -> None:
        pass

    def ends_per_attempt(self) -> Counter[int]:
        with self.lock:
            return Counter(task.attempt_id for task, _ in self.ended)


def config(folder: Path, shell: str) -> AttemptConfig:
    return AttemptConfig(
        steps=(Step(shell=shell),),
        base_dir=folder,
        base_env={**os.environ, "MAPWISE_JOB_ID": "batching"},
        workflow_env={},
        claude_command=("claude",),
        item_timeout=None,
        kill_grace=1.0,
        slots_dir=None,
    )


def task(folder: Path, attempt_id: int) -> AttemptTask:
    return AttemptTask(
        job_id="batching",
        attempt_id=attempt_id,
        item_index=attempt_id,
        item_id=f"i{attempt_id}",
        item=attempt_id,
        attempt_no=1,
        slot=attempt_id,
        log_path=str(folder / "logs" / f"{attempt_id}.log"),
        item_file=str(folder / "items" / f"{attempt_id}.json"),
    )


@pytest.fixture
def executor(dask_scheduler: str) -> Iterator[DaskExecutor]:
    made = DaskExecutor(dask_scheduler, BURST, "batching")
    try:
        yield made
    finally:
        made.shutdown()


class FakeFuture:
    """A Dask future as far as the executor's pushed path uses one."""

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


def pushed(key: str, report: WorkerReport) -> tuple[float, dict[str, Any]]:
    """An event as the client hands it to its topic's handler."""
    return (0.0, {"key": key, "report": pickle.dumps(report)})


def run(executor: DaskExecutor, recorder: Recorder, folder: Path, count: int) -> None:
    """Submit ``count`` attempts of ``true`` and wait for their ends."""
    shared = config(folder, "true")
    for attempt_id in range(1, count + 1):
        executor.submit(task(folder, attempt_id), shared)
    assert recorder.all_ended.wait(WAIT_SECONDS), f"ended: {recorder.ends_per_attempt()}"


def test_a_burst_of_attempts_goes_to_the_scheduler_in_one_message_and_each_ends_once(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    # Given an executor whose submissions to the scheduler are counted
    recorder = Recorder(BURST)
    executor.start(recorder)
    client: Any = executor._client
    sent: list[int] = []
    real_map = client.map

    def counted_map(func: Any, *iterables: Any, **options: Any) -> Any:
        sent.append(len(iterables[0]))
        return real_map(func, *iterables, **options)

    client.map = counted_map
    # And the client's loop busy until the whole burst is submitted
    go = threading.Event()
    client.loop.add_callback(go.wait, WAIT_SECONDS)

    # When a burst of attempts is submitted, then the loop is let go
    shared = config(tmp_path, "true")
    for attempt_id in range(1, BURST + 1):
        executor.submit(task(tmp_path, attempt_id), shared)
    go.set()
    assert recorder.all_ended.wait(WAIT_SECONDS), f"ended: {recorder.ends_per_attempt()}"

    # Then they went to the scheduler in one message
    assert sent == [BURST]
    # And each attempt ended once, succeeded, on a worker
    executor.shutdown()  # the tasks' own results, which came after the pushed reports
    assert recorder.ends_per_attempt() == dict.fromkeys(range(1, BURST + 1), 1)
    assert all(result.outcome.ok for _, result in recorder.ended)
    assert all("(tcp://127.0.0.1:" in result.host for _, result in recorder.ended)
    assert (recorder.lost, recorder.broken) == ([], [])


def test_without_pushed_reports_every_attempt_still_ends_once_by_its_result(
    executor: DaskExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an executor that never hears the reports its workers push (as when a worker's
    # last batch of messages is lost)
    monkeypatch.setattr(executor, "_pushed", lambda event: None)
    recorder = Recorder(BURST)
    executor.start(recorder)

    # When a burst of attempts runs
    run(executor, recorder, tmp_path, BURST)

    # Then each ended once, through its task's result
    executor.shutdown()
    assert recorder.ends_per_attempt() == dict.fromkeys(range(1, BURST + 1), 1)
    assert all(result.outcome.ok for _, result in recorder.ended)


def test_a_pushed_report_is_handed_over_once_and_never_one_that_names_lost_runs(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    # Given an attempt out on the cluster
    recorder = Recorder(1)
    executor.start(recorder)
    out = task(tmp_path, 7)
    future = FakeFuture()
    executor._remote["mapwise-batching-7-1"] = (out, future)
    executor._outstanding[out.attempt_id] = out
    result = attempt_failed(out, ErrorKind.EXIT_CODE, "exited 1", interrupted=False)
    run_now = Execution("now", 2, "tcp://127.0.0.1:2", "host", 2.0)
    run_lost = Execution("lost", 1, "tcp://127.0.0.1:1", "host", 1.0)

    # When its worker pushes a report that names a lost run
    executor._pushed(pushed("mapwise-batching-7-1", WorkerReport(result, run_now, (run_lost,))))

    # Then it is left to the task's result, which kills the lost run before handing over
    assert recorder.ended == []
    assert "mapwise-batching-7-1" in executor._remote
    assert future.released == 0

    # When a report without lost runs comes, twice, and an event that is not a report
    report = WorkerReport(result, run_now, ())
    executor._pushed(pushed("mapwise-batching-7-1", report))
    executor._pushed(pushed("mapwise-batching-7-1", report))
    executor._pushed((0.0, {"action": "update-graph"}))

    # Then the attempt ended once, and its future was released once
    assert [(t.attempt_id, r) for t, r in recorder.ended] == [(7, result)]
    assert future.released == 1
    assert executor._remote == {}
