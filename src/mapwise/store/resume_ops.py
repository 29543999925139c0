"""The writes of resume and of the DLQ commands: sweeping what a stopped run left.

A mixin of ``JobStore`` (kept apart so that each module stays small): it uses the store's
connection, its ``job()`` and ``refresh_summary()``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mapwise.domain.states import Phase
from mapwise.store import db

if TYPE_CHECKING:
    from mapwise.store.records import JobRecord


class ResumeOps:
    """Resume's sweep and the DLQ's requeue and purge."""

    conn: sqlite3.Connection

    if TYPE_CHECKING:

        def job(self) -> JobRecord: ...

        def refresh_summary(self, *, force: bool = True) -> None: ...

    def interrupt_running(self, *, now: float | None = None) -> int:
        """Attempts left running (by a stop or a dead run) become interrupted; items pending.

        Interrupted attempts do not count against ``max_attempts``. Returns how many.
        """
        stamp = time.time() if now is None else now
        with db.transaction(self.conn):
            cursor = self.conn.execute(
                "UPDATE attempts SET outcome = 'interrupted', error_kind = 'interrupted',"
                " ended_at = COALESCE(ended_at, ?) WHERE outcome = 'running'",
                (stamp,),
            )
            self.conn.execute(
                "UPDATE items SET status = 'pending', retry_at = NULL WHERE status = 'running'"
            )
        self.refresh_summary()
        return cursor.rowcount

    def set_options(self, options: dict[str, Any]) -> None:
        """Merge ``options`` into the job's options (max_parallel, input file identity)."""
        with db.transaction(self.conn):
            merged = self.job().options | options
            self.conn.execute("UPDATE job SET options = ? WHERE id = 1", (json.dumps(merged),))

    def replace_workflow(self, *, source: str, sha256: str, path: str) -> None:
        """Adopt an edited workflow (``resume --reload-workflow``); the items stay frozen."""
        with db.transaction(self.conn):
            self.conn.execute(
                "UPDATE job SET workflow_source = ?, workflow_sha256 = ?, workflow_path = ?"
                " WHERE id = 1",
                (source, sha256, path),
            )

    def requeue_dlq(self, item_ids: Sequence[str] | None = None) -> int:
        """DLQ items (all, or those named) back to pending with a fresh retry budget.

        Their attempt history stays. If the job had gone past the map phase, it returns to
        it and reduce will run again over the new results.
        """
        with db.transaction(self.conn):
            if item_ids is None:
                cursor = self.conn.execute(
                    "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL,"
                    " finished_at = NULL WHERE status = 'dlq'"
                )
            else:
                cursor = self.conn.executemany(
                    "UPDATE items SET status = 'pending', attempts = 0, retry_at = NULL,"
                    " finished_at = NULL WHERE status = 'dlq' AND item_id = ?",
                    [(item_id,) for item_id in item_ids],
                )
            changed = cursor.rowcount
            if changed:
                self._back_to_map()
        self.refresh_summary()
        return changed

    def purge_dlq(self, item_ids: Sequence[str] | None = None) -> int:
        """Give up on DLQ items (all, or those named): they leave the DLQ for good."""
        with db.transaction(self.conn):
            if item_ids is None:
                cursor = self.conn.execute(
                    "UPDATE items SET status = 'purged' WHERE status = 'dlq'"
                )
            else:
                cursor = self.conn.executemany(
                    "UPDATE items SET status = 'purged' WHERE status = 'dlq' AND item_id = ?",
                    [(item_id,) for item_id in item_ids],
                )
        self.refresh_summary()
        return cursor.rowcount

    def _back_to_map(self) -> None:
        phase = Phase(self.conn.execute("SELECT phase FROM job WHERE id = 1").fetchone()[0])
        if phase in (Phase.REDUCE, Phase.DONE):
            self.conn.execute("DELETE FROM phase_steps WHERE phase = 'reduce'")
            self.conn.execute(
                "UPDATE job SET phase = 'map', updated_at = ? WHERE id = 1", (time.time(),)
            )
        self.conn.execute(
            "UPDATE job SET status = 'interrupted', status_reason = ? WHERE id = 1"
            " AND status = 'completed'",
            ("items sent back from the DLQ",),
        )

    def close_dead_runs(self) -> int:
        """Runs that never ended (their process died) end as interrupted at the last update."""
        with db.transaction(self.conn):
            cursor = self.conn.execute(
                "UPDATE runs SET outcome = 'interrupted', reason = 'the process died',"
                " ended_at = MAX(started_at, (SELECT updated_at FROM job WHERE id = 1))"
                " WHERE ended_at IS NULL"
            )
        return cursor.rowcount

    def interrupted_attempts(self) -> int:
        """Attempts the last run left unfinished: interrupted by a stop, or left running."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE outcome IN ('running', 'interrupted')"
            " AND run_no = (SELECT MAX(run_no) FROM runs)"
        ).fetchone()
        return int(row[0])
