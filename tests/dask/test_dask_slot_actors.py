"""The Dask executor's slots, through its API on a cluster of this module's own: each slot
is an actor placed once, workers get slots in proportion to their threads, every attempt
ends exactly once, and ``max_parallel`` (not the workers' threads) bounds how many
attempts run at once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers.cluster import start_local_cluster
from helpers.jobs import WAIT_SECONDS
from mapwise.domain.records import AttemptResult, AttemptTask, LostAttempt, Progress
from mapwise.executors.attempt import AttemptConfig
from mapwise.executors.dask import DaskExecutor
from mapwise.workflow.model import Step

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

JOB = "slots"
WORKERS = 2
THREADS = 2  # per worker
ATTEMPTS = 24


@dataclass
class Recorder:
    """The coordinator's side of the contract: what the executor told it, in order; each
    end frees one of ``slots`` (the engine's slot rule)."""

    slots: int
    ended: list[tuple[AttemptTask, AttemptResult]] = field(default_factory=list)
    lost: list[LostAttempt] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    free: threading.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.free = threading.Semaphore(self.slots)

    def attempt_ended(self, task: AttemptTask, result: AttemptResult) -> None:
        with self.lock:
            self.ended.append((task, result))
        self.free.release()

    def attempt_lost(self, lost: LostAttempt) -> None:
        self.lost.append(lost)

    def executor_broken(self, reason: str) -> None:
        self.broken.append(reason)

    def attempt_progress(self, progress: Progress) -> None:
        pass

    def ends_per_attempt(self) -> Counter[int]:
        with self.lock:
            return Counter(task.attempt_id for task, _ in self.ended)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of two workers of two threads; its scheduler runs in this process."""
    made = start_local_cluster(n_workers=WORKERS, threads_per_worker=THREADS)
    try:
        yield made
    finally:
        made.close()


def config(folder: Path, shell: str, timeout: float | None = None) -> AttemptConfig:
    return AttemptConfig(
        steps=(Step(shell=shell),),
        base_dir=folder,
        base_env={**os.environ, "MAPWISE_JOB_ID": JOB},
        workflow_env={},
        claude_command=("claude",),
        item_timeout=timeout,
        kill_grace=1.0,
        slots_dir=None,
    )


def task(folder: Path, attempt_id: int) -> AttemptTask:
    return AttemptTask(
        job_id=JOB,
        attempt_id=attempt_id,
        item_index=attempt_id,
        item_id=f"i{attempt_id}",
        item=attempt_id,
        attempt_no=1,
        slot=attempt_id,
        log_path=str(folder / "logs" / f"{attempt_id}.log"),
        item_file=str(folder / "items" / f"{attempt_id}.json"),
    )


def run_all(
    cluster: Any, folder: Path, slots: int, count: int, attempt: AttemptConfig
) -> tuple[Recorder, dict[str, int]]:
    """Run ``count`` attempts on ``slots`` slots, never more out than slots; what the
    executor reported, and the job's actors per worker while it still ran."""
    executor = DaskExecutor(str(cluster.scheduler_address), slots, JOB)
    recorder = Recorder(slots)
    try:
        executor.start(recorder)
        for attempt_id in range(1, count + 1):
            assert recorder.free.acquire(timeout=WAIT_SECONDS), "no attempt ended"
            executor.submit(task(folder, attempt_id), attempt)
        for _ in range(slots):
            assert recorder.free.acquire(timeout=WAIT_SECONDS), recorder.ends_per_attempt()
        placed = actors_per_worker(cluster.scheduler)
    finally:
        executor.shutdown()
    return recorder, placed


def actors_per_worker(scheduler: Any) -> dict[str, int]:
    """How many of the job's slot actors the scheduler has on each worker."""
    placed: Counter[str] = Counter()
    for key, state in scheduler.tasks.items():
        if str(key).startswith(f"mapwise-slot-{JOB}-") and state.actor:
            placed.update(worker.address for worker in state.who_has)
    return dict(placed)


def test_attempts_run_on_slots_spread_over_the_workers_and_each_ends_once(
    cluster: Any, tmp_path: Path
) -> None:
    # Given an executor of four slots on two workers of two threads
    # When 24 attempts run through it, never more out at once than its slots
    recorder, placed = run_all(cluster, tmp_path, 4, ATTEMPTS, config(tmp_path, "true"))

    # Then each attempt ended once, succeeded, on a worker
    assert recorder.ends_per_attempt() == dict.fromkeys(range(1, ATTEMPTS + 1), 1)
    assert all(result.outcome.ok for _, result in recorder.ended)
    assert all("(tcp://127.0.0.1:" in result.host for _, result in recorder.ended)
    assert (recorder.lost, recorder.broken) == ([], [])
    # And they ran on four actors, made once and kept: two on each worker
    assert sorted(placed.values()) == [2, 2]
    assert len({result.host for _, result in recorder.ended}) == WORKERS


def test_max_parallel_not_the_workers_threads_bounds_the_attempts_at_once(
    cluster: Any, tmp_path: Path
) -> None:
    # Given five attempts that each wait until all five have started (the cluster has
    # four threads), and an executor of five slots
    started = tmp_path / "started"
    started.mkdir()
    wait_for_all = (
        f'touch "{started}/$MAPWISE_ITEM_ID"; '
        f'until [ "$(ls "{started}" | wc -l)" -ge 5 ]; do sleep 0.05; done'
    )

    # When they run
    recorder, placed = run_all(
        cluster, tmp_path, 5, 5, config(tmp_path, wait_for_all, timeout=WAIT_SECONDS / 2)
    )

    # Then they all ran at once and succeeded (none timed out waiting for the others)
    assert [result.outcome.error_kind for _, result in recorder.ended] == [None] * 5
    assert sorted(placed.values()) == [2, 3]
