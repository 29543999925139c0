"""The writes that sweep a stopped job's state: resume's, and the DLQ commands'.

What a dead or stopped run left ``running`` is put back (rq's
``StartedJobRegistry.cleanup``), and DLQ items go back to pending or out for good. Each
function is one transaction on the job's connection; ``JobStore`` is their one face.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from mapwise.domain.states import Phase
from mapwise.store import db


def interrupt_running(conn: sqlite3.Connection, *, now: float | None = None) -> int:
    """Attempts left running (by a stop or a dead run) become interrupted; items pending.

    Interrupted attempts do not count against ``max_attempts``. Returns how many.
    """
    stamp = time.time() if now is None else now
    with db.transaction(conn):
        cursor = conn.execute(
            "UPDATE attempts SET outcome = 'interrupted', error_kind = 'interrupted',"
            " ended_at = COALESCE(ended_at, ?) WHERE outcome = 'running'",
            (stamp,),
        )
        conn.execute(
            "UPDATE items SET status = 'pending', retry_at = NULL WHERE status = 'running'"
        )
        return cursor.rowcount


def set_options(conn: sqlite3.Connection, options: dict[str, Any]) -> None:
    """Merge ``options`` into the job's options (max_parallel, input file identity)."""
    with db.transaction(conn):
        stored = conn.execute("SELECT options FROM job WHERE id = 1").fetchone()[0]
        merged = json.loads(stored) | options
        conn.execute("UPDATE job SET options = ? WHERE id = 1", (json.dumps(merged),))


def replace_workflow(conn: sqlite3.Connection, *, source: str, sha256: str, path: str) -> None:
    """Adopt an edited workflow (``resume --reload-workflow``); the items stay frozen."""
    with db.transaction(conn):
        conn.execute(
            "UPDATE job SET workflow_source = ?, workflow_sha256 = ?, workflow_path = ?"
            " WHERE id = 1",
            (source, sha256, path),
        )


def requeue_dlq(conn: sqlite3.Connection, item_ids: Sequence[str] | None = None) -> int:
    """DLQ items (all, or those named) back to pending with a fresh retry budget.

    Their attempt history stays. If the job had gone past the map phase, it returns to
    it and reduce will run again over the new results.
    """
    with db.transaction(conn):
        if item_ids is None:
            cursor = conn.execute(
                "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL,"
                " finished_at = NULL WHERE status = 'dlq'"
            )
        else:
            cursor = conn.executemany(
                "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL,"
                " finished_at = NULL WHERE status = 'dlq' AND item_id = ?",
                [(item_id,) for item_id in item_ids],
            )
        changed = cursor.rowcount
        if changed:
            _back_to_map(conn)
        return changed


def purge_dlq(conn: sqlite3.Connection, item_ids: Sequence[str] | None = None) -> int:
    """Give up on DLQ items (all, or those named): they leave the DLQ for good."""
    with db.transaction(conn):
        if item_ids is None:
            cursor = conn.execute("UPDATE items SET status = 'purged' WHERE status = 'dlq'")
        else:
            cursor = conn.executemany(
                "UPDATE items SET status = 'purged' WHERE status = 'dlq' AND item_id = ?",
                [(item_id,) for item_id in item_ids],
            )
        return cursor.rowcount


def _back_to_map(conn: sqlite3.Connection) -> None:
    phase = Phase(conn.execute("SELECT phase FROM job WHERE id = 1").fetchone()[0])
    if phase in (Phase.REDUCE, Phase.MERGE, Phase.DONE):
        conn.execute("DELETE FROM phase_steps WHERE phase IN ('reduce', 'merge')")
        conn.execute("UPDATE job SET phase = 'map', updated_at = ? WHERE id = 1", (time.time(),))
    conn.execute(
        "UPDATE job SET status = 'interrupted', status_reason = ? WHERE id = 1"
        " AND status = 'completed'",
        ("items sent back from the DLQ",),
    )


def close_dead_runs(conn: sqlite3.Connection) -> int:
    """Runs that never ended (their process died) end as interrupted at the last update."""
    with db.transaction(conn):
        cursor = conn.execute(
            "UPDATE runs SET outcome = 'interrupted', reason = 'the process died',"
            " ended_at = MAX(started_at, (SELECT updated_at FROM job WHERE id = 1))"
            " WHERE ended_at IS NULL"
        )
    return cursor.rowcount


def interrupted_attempts(conn: sqlite3.Connection) -> int:
    """Attempts the last run left unfinished: interrupted by a stop, or left running."""
    row = conn.execute(
        "SELECT COUNT(*) FROM attempts WHERE outcome IN ('running', 'interrupted')"
        " AND run_no = (SELECT MAX(run_no) FROM runs)"
    ).fetchone()
    return int(row[0])
