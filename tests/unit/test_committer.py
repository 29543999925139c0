"""The map phase's transactions: a turn's batches become one transaction at ``flush``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mapwise.domain.records import AttemptResult, Finished, StepDone, StepRecord, StepsOutcome
from mapwise.domain.states import ItemStatus
from mapwise.engine.committer import Committer
from mapwise.store.batches import Batch
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import job_paths
from mapwise.store.records import Claim


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    paths = job_paths(tmp_path / "state", "j")
    paths.root.parent.mkdir(parents=True)
    made = JobStore.create(
        paths,
        workflow_name="t",
        workflow_path="wf.yml",
        workflow_source="",
        workflow_sha256="",
        options={},
    )
    made.freeze_items(((str(i), i) for i in range(5)), input_sha256=None)
    made.begin_run(pid=1, host="h")
    return made


def _committer(store: JobStore) -> Committer:
    return Committer(store, run_no=1, host="h")


def _succeeded(claim: Claim) -> Finished:
    now = time.time()
    step = StepRecord(
        step_index=0, label="shell: true", started_at=now, ended_at=now, duration=0.0, exit_code=0
    )
    result = AttemptResult(
        attempt_id=claim.attempt_id,
        item_index=claim.item.index,
        attempt_no=claim.attempt_no,
        slot=claim.slot,
        host="h",
        started_at=now,
        ended_at=now,
        duration=0.0,
        outcome=StepsOutcome(steps=(step,), captures={}),
        interrupted=False,
    )
    return Finished(result, ItemStatus.SUCCEEDED, None, True, {"captures": {}})


def _count(store: JobStore, sql: str) -> int:
    return int(store.conn.execute(sql).fetchone()[0])


def test_nothing_submitted_is_no_transaction(store: JobStore) -> None:
    assert _committer(store).flush() is None


def test_a_turns_batches_are_one_transaction_in_submission_order(store: JobStore) -> None:
    committer = _committer(store)
    committer.submit(Batch(free_slots=[0, 1]))
    first = committer.flush()
    assert first is not None and not committer.waiting
    assert [(c.slot, c.item.index) for c in first.claims] == [(0, 0), (1, 1)]

    # a step sent ahead and two ends, submitted in one turn
    step = StepRecord(step_index=0, label="a", started_at=0.0, ended_at=0.0, duration=0.0)
    ahead = StepDone(first.claims[0].attempt_id, 0, step)
    committer.submit(Batch(progress=[ahead], counted=False))
    committer.submit(Batch(finished=[_succeeded(first.claims[0])], free_slots=[0]))
    committer.submit(Batch(finished=[_succeeded(first.claims[1])], free_slots=[1]))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    done = committer.flush()
    store.conn.set_trace_callback(None)

    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 1

    assert done is not None and done.batches == 2  # the progress is not counted
    assert [f.result.attempt_id for f in done.finished] == [c.attempt_id for c in first.claims]
    assert done.offered == [0, 1]
    assert [(c.slot, c.item.index) for c in done.claims] == [(0, 2), (1, 3)]
    assert _count(store, "SELECT COUNT(*) FROM items WHERE status = 'succeeded'") == 2
    assert _count(store, "SELECT COUNT(*) FROM items WHERE status = 'running'") == 2
    assert _count(store, "SELECT COUNT(*) FROM steps") == 3  # two ends, one step ahead


def test_progress_alone_is_recorded_and_not_reported(store: JobStore) -> None:
    committer = _committer(store)
    committer.submit(Batch(free_slots=[0]))
    claimed = committer.flush()
    assert claimed is not None
    step = StepRecord(step_index=0, label="a", started_at=0.0, ended_at=0.0, duration=0.0)
    committer.submit(
        Batch(progress=[StepDone(claimed.claims[0].attempt_id, 0, step)], counted=False)
    )
    assert committer.flush() is None
    assert _count(store, "SELECT COUNT(*) FROM steps") == 1


def test_a_batch_that_claims_nothing_stops_the_claims_of_the_turn(store: JobStore) -> None:
    committer = _committer(store)
    committer.submit(Batch(free_slots=[0, 1]))
    first = committer.flush()
    assert first is not None
    committer.submit(Batch(finished=[_succeeded(first.claims[0])], free_slots=[0]))
    committer.submit(Batch(finished=[_succeeded(first.claims[1])], claim=False))  # stopping
    done = committer.flush()
    assert done is not None
    assert done.claims == [] and done.offered == [0]
    assert _count(store, "SELECT COUNT(*) FROM items WHERE status = 'running'") == 0
