"""The job's state in its SQLite database: every write mapwise makes to a job.

The coordinator is the single writer. Each method that changes state is one
transaction; ``commit_batch`` records a batch of finished attempts and claims the next
items in the same transaction, so a pool slot is reused only after its result is durable.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from types import FunctionType
from typing import Any, ParamSpec, TypeVar

from mapwise.domain.records import MergeTask, StepRecord
from mapwise.domain.states import ItemStatus, JobStatus, Phase, RunOutcome, StepStatus
from mapwise.domain.usage import Cost
from mapwise.errors import StateDamagedError
from mapwise.store import batches, db, ledger, sweeps, worktrees
from mapwise.store.continuation import ClaimPlan
from mapwise.store.paths import JobPaths
from mapwise.store.records import (
    AttemptRecord,
    Claim,
    ItemRecord,
    JobHeader,
    JobRecord,
    RunRecord,
)
from mapwise.store.sqlerrors import translated

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="type[JobStore]")


def _translating(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def classified(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, JobStore)
        with translated(store.conn):
            return method(*args, **kwargs)

    return classified


def _classified(cls: S) -> S:
    """Every public method of the store raises a ``MapwiseError``, never a SQLite error:
    what a failure means (damage, a lock, a read-only or full disk) is decided here, at
    the store's edge, by SQLite's result code (``sqlerrors.classify``)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and isinstance(member, FunctionType):
            setattr(cls, name, _translating(member))
    return cls


@_classified
class JobStore:
    """Reads and writes of one job's database."""

    def __init__(self, conn: sqlite3.Connection, paths: JobPaths) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn
        self.paths = paths

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        paths: JobPaths,
        *,
        workflow_name: str,
        workflow_path: str,
        workflow_source: str,
        workflow_sha256: str,
        options: dict[str, Any],
        now: float | None = None,
    ) -> JobStore:
        """Make the job's folder and database, with the workflow frozen into it."""
        paths.root.mkdir(mode=0o700, parents=True, exist_ok=False)
        try:
            return cls._create_in(
                paths, workflow_name, workflow_path, workflow_source, workflow_sha256, options, now
            )
        except BaseException:
            # a job that could not even be recorded is no job: leave nothing half made
            shutil.rmtree(paths.root, ignore_errors=True)
            raise

    @classmethod
    def _create_in(
        cls,
        paths: JobPaths,
        workflow_name: str,
        workflow_path: str,
        workflow_source: str,
        workflow_sha256: str,
        options: dict[str, Any],
        now: float | None,
    ) -> JobStore:
        store = cls(db.connect(paths.database, create=True), paths)
        try:
            store._insert_job(
                workflow_name, workflow_path, workflow_source, workflow_sha256, options, now
            )
        except BaseException:
            store.close()
            raise
        return store

    def _insert_job(
        self,
        workflow_name: str,
        workflow_path: str,
        workflow_source: str,
        workflow_sha256: str,
        options: dict[str, Any],
        now: float | None,
    ) -> None:
        stamp = time.time() if now is None else now
        with db.transaction(self.conn):
            self.conn.execute(
                "INSERT INTO job (id, job_id, workflow_name, workflow_path, workflow_source,"
                " workflow_sha256, status, phase, created_at, updated_at, options)"
                " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.paths.job_id,
                    workflow_name,
                    workflow_path,
                    workflow_source,
                    workflow_sha256,
                    JobStatus.RUNNING.value,
                    Phase.SETUP.value,
                    stamp,
                    stamp,
                    json.dumps(options),
                ),
            )

    @classmethod
    def open(cls, paths: JobPaths, *, readonly: bool = False) -> JobStore:
        return cls(db.connect(paths.database, readonly=readonly), paths)

    def close(self) -> None:
        self.conn.close()

    # -- the job and its runs ------------------------------------------------------------

    def job(self) -> JobRecord:
        row = self.conn.execute("SELECT * FROM job WHERE id = 1").fetchone()
        if row is None:
            raise StateDamagedError(f"the job record of {self.paths.job_id} is missing")
        return JobRecord.from_row(row)

    def job_header(self) -> JobHeader:
        """The few job fields a listing needs, without the frozen workflow text."""
        row = self.conn.execute(
            "SELECT job_id, workflow_name, status, created_at, updated_at,"
            " json_extract(options, '$.max_parallel') FROM job WHERE id = 1"
        ).fetchone()
        if row is None:
            raise StateDamagedError(f"the job record of {self.paths.job_id} is missing")
        return JobHeader(
            job_id=row[0],
            workflow_name=row[1],
            status=JobStatus(row[2]),
            created_at=row[3],
            updated_at=row[4],
            max_parallel=int(row[5]) if row[5] else 1,
        )

    def set_status(
        self,
        status: JobStatus,
        *,
        phase: Phase | None = None,
        reason: str | None = None,
    ) -> None:
        with db.transaction(self.conn):
            self._set_status(status, phase=phase, reason=reason)

    def _set_status(
        self, status: JobStatus, *, phase: Phase | None = None, reason: str | None = None
    ) -> None:
        if phase is None:
            self.conn.execute(
                "UPDATE job SET status = ?, status_reason = ?, updated_at = ? WHERE id = 1",
                (status.value, reason, time.time()),
            )
        else:
            self.conn.execute(
                "UPDATE job SET status = ?, phase = ?, status_reason = ?, updated_at = ?"
                " WHERE id = 1",
                (status.value, phase.value, reason, time.time()),
            )

    def begin_run(self, *, pid: int, host: str, now: float | None = None) -> int:
        """Record a new run (a start or a resume) and mark the job running."""
        stamp = time.time() if now is None else now
        with db.transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO runs (started_at, outcome, pid, host) VALUES (?, ?, ?, ?)",
                (stamp, RunOutcome.RUNNING.value, pid, host),
            )
            self._set_status(JobStatus.RUNNING)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def end_run(
        self,
        run_no: int,
        *,
        outcome: RunOutcome,
        status: JobStatus,
        reason: str | None = None,
        phase: Phase | None = None,
    ) -> None:
        """Close a run and set the job's status in one transaction."""
        with db.transaction(self.conn):
            self.conn.execute(
                "UPDATE runs SET ended_at = ?, outcome = ?, reason = ? WHERE run_no = ?",
                (time.time(), outcome.value, reason, run_no),
            )
            self._set_status(status, phase=phase, reason=reason)

    def adopt_import(self, job_id: str, workflow_path: str | None) -> None:
        """An imported job takes its new id (and workflow path, if given) and forgets the
        input file's identity, which belonged to the machine it came from."""
        with db.transaction(self.conn):
            options = self.job().options
            options.pop("input_file", None)
            self.conn.execute(
                "UPDATE job SET job_id = ?, workflow_path = COALESCE(?, workflow_path),"
                " options = ? WHERE id = 1",
                (job_id, workflow_path, json.dumps(options)),
            )

    def runs(self) -> list[RunRecord]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY run_no").fetchall()
        return [RunRecord(**dict(row)) for row in rows]

    # -- setup and reduce steps ----------------------------------------------------------

    def phase_steps(self, phase: Phase) -> dict[int, tuple[StepStatus, dict[str, str]]]:
        """Step index -> (status, captures) for the steps of setup or reduce so far."""
        rows = self.conn.execute(
            "SELECT step_index, status, captures FROM phase_steps WHERE phase = ?",
            (phase.value,),
        ).fetchall()
        return {r["step_index"]: (StepStatus(r["status"]), json.loads(r["captures"])) for r in rows}

    def record_phase_step(
        self,
        phase: Phase,
        step_index: int,
        *,
        run_no: int,
        succeeded: bool,
        records: Sequence[StepRecord],
        captures: dict[str, str],
    ) -> None:
        """Record a setup or reduce step (and its on_failure steps) in one transaction."""
        status = StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED
        with db.transaction(self.conn):
            batches.insert_steps(self.conn, None, phase.value, run_no, records)
            self.conn.execute(
                "INSERT INTO phase_steps (phase, step_index, status, captures, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (phase, step_index) DO UPDATE SET"
                " status = excluded.status, captures = excluded.captures,"
                " updated_at = excluded.updated_at",
                (phase.value, step_index, status.value, json.dumps(captures), time.time()),
            )
            if succeeded and captures:
                job_captures = self.job().captures | captures
                self.conn.execute(
                    "UPDATE job SET captures = ? WHERE id = 1", (json.dumps(job_captures),)
                )

    # -- items -----------------------------------------------------------------------------

    def freeze_items(self, items: Iterable[tuple[str, Any]], *, input_sha256: str | None) -> str:
        """Store the resolved item list (id, value) and enter the map phase; return its hash.

        ``items`` is read once, inside the transaction, so it may be a generator: each
        row is written as it comes (a million items are never all in memory). Raises
        ``DuplicateItemIdError`` for two equal ids, and whatever ``items`` raises; either
        way nothing is stored.
        """
        from mapwise.store.itemrows import insert_items

        with db.transaction(self.conn):
            total, digest = insert_items(self.conn, items)
            self._record_frozen(total, digest, input_sha256)
        return digest

    def freeze_item_chunks(
        self, chunks: Iterable[list[Any]], *, input_sha256: Callable[[], str]
    ) -> str:
        """:meth:`freeze_items` of the values of ``chunks``, with ids their positions,
        written by SQLite (``itemrows.insert_item_chunks``); ``input_sha256()`` is asked
        once they are all written. Raises ``NotBulkError`` if SQLite cannot write them as
        freeze_items would, and whatever ``chunks`` raises; either way nothing is stored.
        """
        from mapwise.store.itemrows import insert_item_chunks

        with db.transaction(self.conn):
            total, digest = insert_item_chunks(self.conn, chunks)
            self._record_frozen(total, digest, input_sha256())
        return digest

    def _record_frozen(self, total: int, digest: str, input_sha256: str | None) -> None:
        """The frozen list's count and digests, and the map phase (in the freeze's
        transaction)."""
        now = time.time()
        self.conn.execute(
            "UPDATE job SET input_sha256 = ?, items_sha256 = ?, items_frozen_at = ?,"
            " total_items = ?, phase = ?, updated_at = ? WHERE id = 1",
            (input_sha256, digest, now, total, Phase.MAP.value, now),
        )

    def item_counts(self) -> dict[ItemStatus, int]:
        """Items per status, from the trigger-kept ``item_counts`` table (no item scan)."""
        rows = self.conn.execute("SELECT status, n FROM item_counts WHERE n > 0").fetchall()
        counts = dict.fromkeys(ItemStatus, 0)
        for status, count in rows:
            counts[ItemStatus(status)] = count
        return counts

    def items(self, status: ItemStatus | None = None) -> list[ItemRecord]:
        if status is None:
            rows = self.conn.execute("SELECT * FROM items ORDER BY idx").fetchall()
        else:
            rows = self.conn.execute(
                "SELECT * FROM items WHERE status = ? ORDER BY idx", (status.value,)
            ).fetchall()
        return [ItemRecord.from_row(r) for r in rows]

    def item_by_id(self, item_id: str) -> ItemRecord | None:
        row = self.conn.execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
        return ItemRecord.from_row(row) if row else None

    def attempts_of(self, item_index: int) -> list[AttemptRecord]:
        rows = self.conn.execute(
            "SELECT * FROM attempts WHERE item_idx = ? ORDER BY attempt_no", (item_index,)
        ).fetchall()
        return [AttemptRecord.from_row(r) for r in rows]

    def steps_of(self, attempt_id: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM steps WHERE attempt_id = ? ORDER BY id", (attempt_id,)
        ).fetchall()

    def finished_seconds(self) -> tuple[int, float]:
        """(count, total seconds) of finished items (succeeded or in the DLQ), without a scan."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(seconds), 0) FROM item_counts"
            " WHERE status IN ('succeeded', 'dlq')"
        ).fetchone()
        return int(row[0]), float(row[1])

    def finished_durations(self) -> list[float]:
        """The durations of finished items (succeeded or in the DLQ), sorted."""
        # plain tuples, sorted here: sqlite3.Row objects and SQLite's sorter made this most
        # of a status of a big job
        cursor = self.conn.cursor()
        cursor.row_factory = None
        rows = cursor.execute("SELECT duration FROM items WHERE status IN ('succeeded', 'dlq')")
        return sorted(float(row[0]) for row in rows)

    def compute_seconds(self) -> float:
        """The job's compute time: the sum of every attempt's duration."""
        row = self.conn.execute("SELECT COALESCE(SUM(duration), 0) FROM attempts").fetchone()
        return float(row[0])

    def next_retry_at(self) -> float | None:
        """The earliest time a failed item waiting for its backoff may run again."""
        row = self.conn.execute(
            "SELECT MIN(retry_at) FROM items WHERE status = 'failed'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    # -- the map phase's batches -----------------------------------------------------------

    def commit_batch(
        self,
        batch: batches.Batch,
        *,
        run_no: int,
        host: str,
        now: float,
        pool: worktrees.Pool | None = None,
        plan: ClaimPlan | None = None,
    ) -> list[Claim]:
        """Record a batch and claim items for its free slots, in one transaction."""
        return batches.commit_batch(
            self.conn, batch, run_no=run_no, host=host, now=now, pool=pool, plan=plan
        )

    def job_cost(self) -> Cost:
        """What the job's agents spent so far, in every phase and run."""
        return ledger.job_cost(self.conn)

    def item_costs(self, indexes: Sequence[int] | None = None) -> dict[int, Cost]:
        """Each item's agent spend (items with no agent run are absent)."""
        return ledger.item_costs(self.conn, indexes)

    def agent_runs_of(self, index: int) -> list[ledger.AgentRunRecord]:
        """An item's agent step executions, oldest first."""
        return ledger.runs_of_item(self.conn, index)

    def worktree_holders(self, statuses: tuple[ItemStatus, ...]) -> list[ItemRecord]:
        """Worktree mode: items of these statuses holding a worktree or a branch."""
        return worktrees.holders(self.conn, tuple(s.value for s in statuses))

    def unbind_worktrees(self, indexes: list[int]) -> None:
        """Worktree mode: these items' worktrees and branches are gone."""
        with db.transaction(self.conn):
            worktrees.unbind(self.conn, indexes)

    def anything_merged(self) -> bool:
        """Worktree mode: whether any item's commit was queued for (or made) a merge."""
        row = self.conn.execute("SELECT 1 FROM items WHERE head_commit IS NOT NULL LIMIT 1")
        return row.fetchone() is not None

    def held_worktrees(self) -> list[str]:
        """Worktree mode: the pool folders that items hold."""
        return worktrees.held_worktrees(self.conn)

    def merge_queue(self) -> list[MergeTask]:
        """Worktree mode: the items waiting for their merge, in the order they finished."""
        return worktrees.merge_queue(self.conn)

    # -- sweeps: resume and the DLQ commands ----------------------------------------------

    def interrupt_running(self, *, now: float | None = None) -> int:
        """Attempts left running become interrupted (not counted), their items pending."""
        return sweeps.interrupt_running(self.conn, now=now)

    def set_options(self, options: dict[str, Any]) -> None:
        """Merge ``options`` into the job's options (max_parallel, input file identity)."""
        sweeps.set_options(self.conn, options)

    def replace_workflow(self, *, source: str, sha256: str, path: str) -> None:
        """Adopt an edited workflow (``resume --reload-workflow``); the items stay frozen."""
        sweeps.replace_workflow(self.conn, source=source, sha256=sha256, path=path)

    def requeue_dlq(self, item_ids: Sequence[str] | None = None) -> int:
        """DLQ items (all, or those named) back to pending with a fresh retry budget."""
        return sweeps.requeue_dlq(self.conn, item_ids)

    def purge_dlq(self, item_ids: Sequence[str] | None = None) -> int:
        """Give up on DLQ items (all, or those named): they leave the DLQ for good."""
        return sweeps.purge_dlq(self.conn, item_ids)

    def close_dead_runs(self) -> int:
        """Runs that never ended (their process died) end as interrupted."""
        return sweeps.close_dead_runs(self.conn)

    def interrupted_attempts(self) -> int:
        """Attempts the last run left unfinished: interrupted by a stop, or left running."""
        return sweeps.interrupted_attempts(self.conn)
