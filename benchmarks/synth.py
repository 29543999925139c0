"""Build a job's state synthetically: N items, S succeeded, D in the DLQ, the rest pending.

Used by the resume and listing benchmarks, so that measuring "resume of a 100,000-item
job with half of it done" does not first take minutes of running `true`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mapwise.store import db
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import job_paths
from mapwise.workflow.loader import load_workflow


def synthesize(
    workflow: Path, state_dir: Path, job_id: str, total: int, succeeded: int, dlq: int
) -> None:
    loaded = load_workflow(workflow)
    paths = job_paths(state_dir, job_id)
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    store = JobStore.create(
        paths,
        workflow_name=loaded.workflow.name,
        workflow_path=str(loaded.path),
        workflow_source=loaded.source,
        workflow_sha256=loaded.sha256,
        options={"max_parallel": loaded.workflow.resolved_max_parallel()},
    )
    store.freeze_items([(str(i), {"n": i}) for i in range(total)], input_sha256=None)
    now = time.time()
    with db.transaction(store.conn):
        store.conn.execute(
            "INSERT INTO runs (started_at, ended_at, outcome, pid, host) "
            "VALUES (?, ?, 'interrupted', 1, 'synth')",
            (now - 60, now - 1),
        )
        store.conn.executemany(
            "INSERT INTO attempts (item_idx, attempt_no, run_no, slot, started_at, ended_at,"
            " duration, outcome, error_kind, exit_code) VALUES (?, 1, 1, 0, ?, ?, 0.01, ?, ?, ?)",
            [
                (
                    i,
                    now - 2,
                    now - 1.99,
                    "succeeded" if i < succeeded else "failed",
                    None if i < succeeded else "exit_code",
                    0 if i < succeeded else 1,
                )
                for i in range(succeeded + dlq)
            ],
        )
        store.conn.execute(
            "UPDATE items SET status = 'succeeded', attempts = 1, duration = 0.01,"
            " finished_at = ? WHERE idx < ?",
            (now, succeeded),
        )
        store.conn.execute(
            "UPDATE items SET status = 'dlq', attempts = 1, duration = 0.01, finished_at = ?,"
            " error_kind = 'exit_code', exit_code = 1, last_error = 'synthetic'"
            " WHERE idx >= ? AND idx < ?",
            (now, succeeded, succeeded + dlq),
        )
        store.conn.execute("UPDATE job SET status = 'interrupted' WHERE id = 1")
    store.close()


if __name__ == "__main__":
    wf, state, job, total, ok, dlq = sys.argv[1:7]
    synthesize(Path(wf), Path(state), job, int(total), int(ok), int(dlq))
    print(json.dumps({"job_id": job}))
