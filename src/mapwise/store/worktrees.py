"""The worktree columns of a job's items: which branch and worktree each has, the merge
queue, and what a merge decided. Worktree mode only; each function runs inside the
caller's transaction (``commit_batch``), so a crash leaves them consistent with the rest.

A worktree folder of the job's pool is bound to an item from its first claim until its
commit is merged (then the folder is free for the next item) or, for an item in the DLQ,
until ``dlq purge`` or ``mapwise clean``: an item's uncommitted work is never handed to
another item.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace

from mapwise.domain.records import Finished, MergeTask, Settled
from mapwise.domain.states import ErrorKind, ItemStatus
from mapwise.store.records import ItemRecord
from mapwise.workspace.refnames import ref_safe


@dataclass(frozen=True)
class Pool:
    """Where a job's item worktrees live and how its item branches are named."""

    folder: str  # <state>/jobs/<job_id>/worktrees
    job_id: str

    def branch_for(self, item_id: str) -> str:
        return f"mapwise/{self.job_id}/item/{ref_safe(item_id)}"


def _free_worktree(conn: sqlite3.Connection, pool: Pool) -> str:
    """The pool's first folder that no item holds (it may not exist yet)."""
    rows = conn.execute("SELECT worktree FROM items WHERE worktree IS NOT NULL").fetchall()
    bound = {row[0] for row in rows}
    number = 0
    while f"{pool.folder}/wt-{number}" in bound:
        number += 1
    return f"{pool.folder}/wt-{number}"


def _unique_branch(conn: sqlite3.Connection, pool: Pool, item: ItemRecord) -> str:
    """The item's branch: its id made ref-safe; when another item holds that name (git
    compares ref names without case on some file systems, so this does too), the item's
    index is added, then a counter, until the name is free."""
    base = pool.branch_for(item.item_id)
    candidates = [base, f"{base}-{item.index}"]
    candidates += (f"{base}-{item.index}-{n}" for n in range(2, 1000))
    for branch in candidates:
        taken = conn.execute(
            "SELECT 1 FROM items WHERE branch IS NOT NULL AND lower(branch) = lower(?)"
            " AND idx != ?",
            (branch, item.index),
        ).fetchone()
        if not taken:
            return branch
    raise AssertionError("a thousand items share one branch name")  # pragma: no cover


def bind(conn: sqlite3.Connection, item: ItemRecord, pool: Pool) -> ItemRecord:
    """At a claim: the item gets a branch (once) and a worktree of the pool (if none)."""
    branch = item.branch or _unique_branch(conn, pool, item)
    worktree = item.worktree or _free_worktree(conn, pool)
    if (branch, worktree) != (item.branch, item.worktree):
        conn.execute(
            "UPDATE items SET branch = ?, worktree = ? WHERE idx = ?",
            (branch, worktree, item.index),
        )
    return replace(item, branch=branch, worktree=worktree)


def last_interrupted(conn: sqlite3.Connection, index: int) -> bool:
    """Whether the item's last attempt was interrupted: its next one continues it."""
    row = conn.execute(
        "SELECT outcome FROM attempts WHERE item_idx = ? ORDER BY attempt_no DESC, id DESC LIMIT 1",
        (index,),
    ).fetchone()
    return row is not None and row[0] == "interrupted"


def record_attempt(conn: sqlite3.Connection, done: Finished) -> None:
    """An attempt's worktree facts: its start commit, and its commit for the queue."""
    result = done.result
    if result.start_commit is not None:
        conn.execute(
            "UPDATE items SET start_commit = COALESCE(start_commit, ?) WHERE idx = ?",
            (result.start_commit, result.item_index),
        )
    if done.item_status is ItemStatus.SUCCEEDED:
        # nothing to merge: the worker removed the branch and freed the worktree
        conn.execute("UPDATE items SET worktree = NULL WHERE idx = ?", (result.item_index,))
    elif done.item_status is ItemStatus.MERGING:
        # the commit is on the item's branch; the worker detached the worktree for reuse
        conn.execute(
            "UPDATE items SET head_commit = ?, conflict_files = NULL, worktree = NULL,"
            " merge_seq = (SELECT COALESCE(MAX(merge_seq), 0) + 1 FROM items) WHERE idx = ?",
            (result.commit, result.item_index),
        )


def record_settled(conn: sqlite3.Connection, settled: Settled, now: float) -> None:
    """What the merge of one item decided: succeeded, a rerun, or the DLQ."""
    task = settled.task
    if settled.item_status is ItemStatus.SUCCEEDED:
        # merged: its worktree goes back to the pool, its branch is gone (or going)
        conn.execute(
            "UPDATE items SET status = 'succeeded', finished_at = ?, worktree = NULL,"
            " merge_seq = NULL, conflict_files = NULL WHERE idx = ?",
            (now, task.item_index),
        )
        return
    kind = settled.error_kind.value if settled.error_kind else None
    conn.execute(
        "UPDATE attempts SET outcome = 'failed', error_kind = ?, stderr_tail = ? WHERE id = ?",
        (kind, settled.detail, task.attempt_id),
    )
    rerun = settled.item_status is ItemStatus.RETRY_WAIT
    conflict = settled.error_kind is ErrorKind.MERGE_CONFLICT
    conn.execute(
        "UPDATE items SET status = ?, retry_at = ?, finished_at = ?, error_kind = ?,"
        " last_error = ?, conflict_files = ?, merge_seq = NULL,"
        " worktree = COALESCE(?, worktree),"
        # after a conflict the next attempt (a rerun, or a retry from the DLQ) starts
        # from the job branch's new head, not from the old start
        " start_commit = CASE WHEN ? THEN NULL ELSE start_commit END,"
        " head_commit = CASE WHEN ? THEN NULL ELSE head_commit END WHERE idx = ?",
        (
            settled.item_status.value,
            settled.retry_at,
            None if rerun else now,
            kind,
            settled.detail,
            json.dumps(list(settled.conflicts)) if settled.conflicts else None,
            settled.worktree,
            conflict,
            rerun,
            task.item_index,
        ),
    )


def merge_queue(conn: sqlite3.Connection) -> list[MergeTask]:
    """The items waiting for their merge, in the order they finished."""
    rows = conn.execute(
        "SELECT idx, item_id, branch, head_commit, attempts, worktree,"
        " (SELECT MAX(id) FROM attempts WHERE item_idx = items.idx AND outcome = 'succeeded'),"
        " (SELECT MAX(attempt_no) FROM attempts WHERE item_idx = items.idx)"
        " FROM items WHERE status = 'merging' ORDER BY merge_seq"
    ).fetchall()
    return [
        MergeTask(
            item_index=row[0],
            item_id=row[1],
            attempt_id=row[6],
            branch=row[2],
            commit=row[3],
            counted=row[4],
            worktree=row[5],
            attempt_no=row[7] or 0,
        )
        for row in rows
    ]


def held_worktrees(conn: sqlite3.Connection) -> list[str]:
    """The pool folders items hold: running, interrupted, waiting, or in the DLQ."""
    rows = conn.execute("SELECT worktree FROM items WHERE worktree IS NOT NULL").fetchall()
    return [row[0] for row in rows]


def holders(conn: sqlite3.Connection, statuses: tuple[str, ...]) -> list[ItemRecord]:
    """Items of these statuses that hold a worktree or a branch."""
    marks = ", ".join("?" for _ in statuses)
    rows = conn.execute(
        f"SELECT * FROM items WHERE status IN ({marks})"
        " AND (worktree IS NOT NULL OR branch IS NOT NULL) ORDER BY idx",
        statuses,
    ).fetchall()
    return [ItemRecord.from_row(row) for row in rows]


def unbind(conn: sqlite3.Connection, indexes: list[int]) -> None:
    """Items whose worktree and branch were removed (``clean``, ``dlq purge``)."""
    conn.executemany(
        "UPDATE items SET worktree = NULL, branch = NULL WHERE idx = ?",
        [(index,) for index in indexes],
    )
