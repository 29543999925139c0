"""The map phase's transactions: record finished attempts, claim the next items.

``commit_batch`` is one transaction, so a pool slot is offered again only in the
transaction that records its last result. It records decisions made before (by
``domain.mapstate``): nothing here chooses an item's next state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from mapwise.domain.records import (
    Finished,
    LostAttempt,
    Progress,
    SessionStarted,
    Settled,
    StepDone,
    StepRecord,
)
from mapwise.domain.states import Phase
from mapwise.store import db, ledger, worktrees
from mapwise.store.continuation import ClaimPlan, plan_attempt, record_plan, record_session
from mapwise.store.records import Claim, ItemRecord


@dataclass(frozen=True)
class Batch:
    """One transaction's work: what to record, and the slots to claim items for."""

    finished: Sequence[Finished] = ()
    lost: Sequence[LostAttempt] = ()
    settled: Sequence[Settled] = ()  # worktree mode: what merges decided
    free_slots: Sequence[int] = ()
    claim: bool = True
    progress: Sequence[Progress] = ()  # steps and sessions of attempts still running
    counted: bool = True  # False: progress only, which the map state never asked for


def commit_batch(
    conn: sqlite3.Connection,
    batch: Batch,
    *,
    run_no: int,
    host: str,
    now: float,
    pool: worktrees.Pool | None = None,
    plan: ClaimPlan | None = None,
) -> list[Claim]:
    """Record a batch and claim items for its free slots, in one transaction.

    With a worktree ``pool``, each claimed item is bound to its branch and a worktree;
    with a ``plan``, each claim gets its continuation, sessions and budget.
    """
    with db.transaction(conn):
        for note in batch.progress:
            _record_progress(conn, note, run_no)
        for gone in batch.lost:
            _record_lost(conn, gone)
        for done in batch.finished:
            _record_finished(conn, done, run_no)
        for settled in batch.settled:
            worktrees.record_settled(conn, settled, now)
        claims = []
        if batch.claim:
            claims = _claim(conn, batch.free_slots, run_no, host, now, pool, plan)
        if batch.finished or batch.settled or batch.progress:
            conn.execute("UPDATE job SET updated_at = ? WHERE id = 1", (now,))
    return claims


def _record_progress(conn: sqlite3.Connection, note: Progress, run_no: int) -> None:
    if isinstance(note, StepDone):
        insert_steps(conn, note.attempt_id, Phase.MAP.value, run_no, [note.record], note.item_index)
    elif isinstance(note, SessionStarted):
        record_session(conn, note.attempt_id, note.step_index, note.session_id)


def _record_lost(conn: sqlite3.Connection, gone: LostAttempt) -> None:
    """Keep an execution a dead worker lost as an extra, interrupted attempt."""
    conn.execute(
        "INSERT INTO attempts (item_idx, attempt_no, run_no, slot, host, started_at,"
        " ended_at, duration, outcome, error_kind, stderr_tail)"
        " SELECT item_idx, attempt_no, run_no, slot, ?, ?, ?, ?, 'interrupted',"
        " 'interrupted', 'the worker running it was lost' FROM attempts WHERE id = ?",
        (
            gone.host,
            gone.started_at,
            gone.ended_at,
            max(gone.ended_at - gone.started_at, 0.0),
            gone.attempt_id,
        ),
    )


def _record_finished(conn: sqlite3.Connection, done: Finished, run_no: int) -> None:
    r = done.result
    o = r.outcome
    conn.execute(
        "UPDATE attempts SET host = ?, started_at = ?, ended_at = ?, duration = ?,"
        " outcome = ?, error_kind = ?, exit_code = ?, signal = ?, stderr_tail = ?,"
        " log_path = ? WHERE id = ?",
        (
            r.host,
            r.started_at,
            r.ended_at,
            r.duration,
            done.attempt_outcome.value,
            o.error_kind.value if o.error_kind else None,
            o.exit_code,
            o.signal,
            o.stderr_tail or None,
            o.log_path,
            r.attempt_id,
        ),
    )
    steps = [step for step in o.steps if not step.reported]  # the rest went ahead (StepDone)
    insert_steps(conn, r.attempt_id, Phase.MAP.value, run_no, steps, r.item_index)
    if r.in_worktree:
        worktrees.record_attempt(conn, done)
    finished_at = r.ended_at if done.item_status.finished else None
    conn.execute(
        "UPDATE items SET status = ?, attempts = attempts + ?, retry_at = ?,"
        " duration = duration + ?, finished_at = ?, error_kind = ?, exit_code = ?,"
        " last_error = ?, result = ? WHERE idx = ?",
        (
            done.item_status.value,
            int(done.counted),
            done.retry_at,
            r.duration,
            finished_at,
            o.error_kind.value if o.error_kind else None,
            o.exit_code,
            o.last_error or None,
            json.dumps(done.result_json) if done.result_json is not None else None,
            r.item_index,
        ),
    )


def _claim(
    conn: sqlite3.Connection,
    slots: Sequence[int],
    run_no: int,
    host: str,
    now: float,
    pool: worktrees.Pool | None,
    plan: ClaimPlan | None,
) -> list[Claim]:
    if not slots:
        return []
    # two index range reads, merged: one query over both statuses would sort every
    # pending item on each claim (quadratic over a job)
    pending = conn.execute(
        "SELECT * FROM items WHERE status = 'pending' ORDER BY idx LIMIT ?", (len(slots),)
    ).fetchall()
    due = conn.execute(
        "SELECT * FROM items WHERE status = 'failed' AND retry_at <= ? ORDER BY idx LIMIT ?",
        (now, len(slots)),
    ).fetchall()
    rows = sorted(pending + due, key=lambda row: row["idx"])[: len(slots)]
    claims: list[Claim] = []
    for row, slot in zip(rows, slots, strict=False):
        item = ItemRecord.from_row(row)
        attempt_no = (
            conn.execute(
                "SELECT COUNT(*) FROM attempts WHERE item_idx = ?", (item.index,)
            ).fetchone()[0]
            + 1
        )
        planned = plan_attempt(conn, item.index, plan) if plan is not None else None
        continues = False
        if pool is not None:
            item = worktrees.bind(conn, item, pool)
            if planned is not None:
                continues = planned.continues
            else:
                continues = worktrees.last_interrupted(conn, item.index)
        cursor = conn.execute(
            "INSERT INTO attempts (item_idx, attempt_no, run_no, slot, host, started_at,"
            " outcome) VALUES (?, ?, ?, ?, ?, ?, 'running')",
            (item.index, attempt_no, run_no, slot, host, now),
        )
        conn.execute(
            "UPDATE items SET status = 'running', retry_at = NULL WHERE idx = ?",
            (item.index,),
        )
        attempt_id = cursor.lastrowid
        assert attempt_id is not None
        if planned is None:
            claims.append(Claim(item, attempt_id, attempt_no, slot, continues))
            continue
        record_plan(conn, attempt_id, planned)
        claims.append(
            Claim(
                item,
                attempt_id,
                attempt_no,
                slot,
                continues,
                resume=planned.resume,
                sessions=planned.sessions,
                budget=planned.budget,
            )
        )
    return claims


def insert_steps(
    conn: sqlite3.Connection,
    attempt_id: int | None,
    phase: str,
    run_no: int,
    records: Sequence[StepRecord],
    item_index: int | None = None,
) -> None:
    """Step records, and the ledger rows of the agent steps among them."""
    conn.executemany(
        "INSERT INTO steps (attempt_id, phase, run_no, step_index, on_failure, label,"
        " started_at, ended_at, duration, exit_code, signal, timed_out, error_kind,"
        " stderr_tail, log_path, part, captured)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                attempt_id,
                phase,
                run_no,
                r.step_index,
                int(r.on_failure),
                r.label,
                r.started_at,
                r.ended_at,
                r.duration,
                r.exit_code,
                r.signal,
                int(r.timed_out),
                r.error_kind.value if r.error_kind else None,
                r.stderr_tail or None,
                r.log_path,
                r.part,
                r.captured,
            )
            for r in records
        ],
    )
    agents = [r for r in records if r.agent is not None]
    if agents:
        ledger.insert_runs(conn, attempt_id, item_index, phase, run_no, agents)
