"""A job database written by the version before agent steps (schema 2) on this version.

The fixture tests/fixtures/v2 is the job ``v2job`` as that version left it: 4 items, a
``claude:`` step 2 (run then by an agent stand-in that printed plain text), item-3 in the
DLQ because its step 3 (``test 3 -ne 3``) fails. Readers open it read-only and leave it
at schema 2 (cost zero); the first writer, ``resume``, brings it to schema 3 (the
``agent_runs`` ledger, the new columns) and keeps every old row as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.project import FIXTURES, Project

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")

V2 = FIXTURES / "v2"
JOB = "v2job"
COST_KEYS = {
    "usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "turns",
    "agent_runs",
    "sessions",
}
# the columns of schema 2, to compare old rows before and after the migration
ATTEMPT_COLUMNS = (
    "id, item_idx, attempt_no, run_no, slot, host, started_at, ended_at, duration, outcome,"
    " error_kind, exit_code, signal, stderr_tail, log_path"
)
STEP_COLUMNS = (
    "id, attempt_id, phase, run_no, step_index, on_failure, label, started_at, ended_at,"
    " duration, exit_code, signal, timed_out, error_kind, stderr_tail, log_path"
)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def is_zero(cost: dict[str, Any] | None) -> bool:
    """A ``cost`` object with every field (SPEC section 9), all zero; None (no cost
    shown) counts as zero where the key is optional."""
    return cost is None or (set(cost) >= COST_KEYS and not any(cost.values()))


def schema_version(db: Path) -> int:
    [(value,)] = rows(db, "SELECT value FROM meta WHERE key = 'schema_version'")
    return int(value)


def tables(db: Path) -> set[str]:
    return {name for (name,) in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def moved(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture's job copied into this project's state dir, its workflow beside it
    (the job moved machines: job.workflow_path is rewritten to the copy)."""
    job_dir = project.state_dir / "jobs" / JOB
    job_dir.mkdir(parents=True)
    db = job_dir / "state.db"
    shutil.copy(V2 / "state.db", db)
    db.chmod(0o600)
    for name in ("workflow.yml", "items.json"):
        shutil.copy(V2 / name, project.root / name)
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE job SET workflow_path = ?", (str(project.root / "workflow.yml"),))
        conn.commit()
    finally:
        conn.close()
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(project.root / "claude-log.jsonl"))
    return db


def claude_starts(project: Project) -> list[dict[str, Any]]:
    path = project.root / "claude-log.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if not line["ended"]]


def test_schema_2_job_reads_fine_read_only_and_stays_schema_2(
    project: Project, moved: Path
) -> None:
    # Given the schema 2 database (and a digest of its bytes)
    assert schema_version(moved) == 2
    before = hashlib.sha256(moved.read_bytes()).hexdigest()

    # When status, jobs, dlq list and dlq show read it
    status = project.inspect("status", JOB, "--json")
    items = project.inspect("status", JOB, "--items", "--json")
    text = project.inspect("status", JOB)
    jobs = project.inspect("jobs", "--json")
    listed = project.inspect("dlq", "list", JOB, "--json")
    shown = project.inspect("dlq", "show", JOB, "item-3")

    # Then they read it: the job as it was, with zero cost
    for done in (status, items, text, jobs, listed, shown):
        assert done.returncode == 0, (done.args, done.stderr)
        assert "Traceback" not in done.stderr
    report = status.json()
    assert report["status"] == "completed"
    assert report["progress"]["completed_items"] == 3
    assert report["dlq_count"] == 1
    assert report["cost"] is not None and is_zero(report["cost"])
    assert all(is_zero(item.get("cost")) for item in items.json()["items"])
    [job] = jobs.json()
    assert job["job_id"] == JOB
    assert job["cost"] is not None and is_zero(job["cost"])
    [entry] = listed.json()
    assert (entry["item_id"], entry["error_kind"], entry["exit_code"]) == (
        "item-3",
        "exit_code",
        1,
    )
    assert is_zero(entry.get("cost"))
    assert "step 2: claude: fix ${item.title}" in shown.stdout
    assert "step 3: shell: test ${item.n} -ne 3 -> exit=1" in shown.stdout

    # And nothing was written: still schema 2, no ledger, the same bytes
    assert schema_version(moved) == 2
    assert "agent_runs" not in tables(moved)
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == before


def test_resume_retry_failed_migrates_to_schema_3_and_reruns_only_the_dlq_item(
    project: Project, moved: Path
) -> None:
    # Given the schema 2 job and its old rows
    old_attempts = rows(moved, f"SELECT {ATTEMPT_COLUMNS} FROM attempts ORDER BY id")
    old_steps = rows(moved, f"SELECT {STEP_COLUMNS} FROM steps ORDER BY id")
    old_items = rows(moved, "SELECT idx, item_id, data FROM items ORDER BY idx")
    assert len(old_attempts) == 4

    # When it is resumed with --retry-failed (item-3 fails again at its step 3)
    done = project.cli("resume", JOB, "--retry-failed", "--state-dir", str(project.state_dir))

    # Then the database is at schema 3 with the ledger, and the old rows are intact
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert schema_version(moved) == 3
    assert "agent_runs" in tables(moved)
    assert rows(moved, f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id <= 4 ORDER BY id") == (
        old_attempts
    )
    assert rows(moved, f"SELECT {STEP_COLUMNS} FROM steps WHERE id <= 13 ORDER BY id") == (
        old_steps
    )
    assert rows(moved, "SELECT idx, item_id, data FROM items ORDER BY idx") == old_items
    assert (
        rows(moved, "SELECT sessions, resume_from, carried FROM attempts WHERE id <= 4")
        == [(None, None, None)] * 4
    )

    # And only item-3 ran again: one claude run, its prompt; the others kept one attempt
    [start] = claude_starts(project)
    assert start["prompt"] == "fix third"
    assert start["mode"] == "new"
    counts = dict(
        rows(
            moved,
            "SELECT i.item_id, count(*) FROM attempts a JOIN items i ON i.idx = a.item_idx"
            " GROUP BY i.item_id",
        )
    )
    assert counts == {"item-1": 1, "item-2": 1, "item-3": 2, "item-4": 1}
    statuses = dict(rows(moved, "SELECT item_id, status FROM items"))
    assert statuses == {
        "item-1": "succeeded",
        "item-2": "succeeded",
        "item-3": "dlq",
        "item-4": "succeeded",
    }

    # And item-3's new attempt has its claude step on the ledger, with the session the
    # attempt recorded and the fake ran
    [(attempt_id, run_no, sessions)] = rows(
        moved,
        "SELECT a.id, a.run_no, a.sessions FROM attempts a JOIN items i ON i.idx = a.item_idx"
        " WHERE i.item_id = 'item-3' AND a.attempt_no = 2",
    )
    assert run_no == 2
    assert json.loads(sessions) == {"1": start["session_id"]}
    [ledger] = rows(
        moved,
        "SELECT attempt_id, phase, run_no, step_index, agent, session_id, result_read,"
        " subtype, cost_usd FROM agent_runs",
    )
    assert ledger == (attempt_id, "map", 2, 1, "claude", start["session_id"], 1, "success", 0.01)
    cost = project.inspect("status", JOB, "--json").json()["cost"]
    assert (cost["usd"], cost["agent_runs"], cost["sessions"]) == (0.01, 1, 1)
