"""The listing after a crash says what the database holds, never less.

A regression test: ``mapwise jobs`` and ``list_resumable_jobs()`` read a ``summary.json``
cache, refreshed at most once a second and after the commits it reported, so a job killed
with ``kill -9`` was listed with fewer completed items than it had (17 of 25, or 0 of 5).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mapwise

JOB = "listed"


def _succeeded(database: Path) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM items WHERE status = 'succeeded'").fetchone()[0]
        )
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _start(tmp_path: Path, items: int) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "items.json").write_text(json.dumps([{"n": i} for i in range(items)]))
    (tmp_path / "wf.yml").write_text(
        "name: listing\n"
        "map:\n"
        "  input: items.json\n"
        "  max_parallel: 4\n"
        "  agent_template:\n"
        "    - shell: 'sleep 0.05'\n"
    )
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mapwise",
            "run",
            "wf.yml",
            "--job-id",
            JOB,
            "-q",
            "--state-dir",
            str(state),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, state


def _kill_after(process: subprocess.Popen[bytes], database: Path, done: int) -> int:
    """kill -9 once ``done`` items are recorded succeeded; how many are on record then."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if database.exists() and _succeeded(database) >= done:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the job ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return _succeeded(database)


@pytest.mark.parametrize(("items", "done"), [(120, 25), (60, 5)])
def test_a_job_killed_midway_is_listed_with_every_item_its_database_holds(
    tmp_path: Path, items: int, done: int
) -> None:
    # Given a job killed with kill -9 once `done` items had succeeded
    process, state = _start(tmp_path, items)
    recorded = _kill_after(process, state / "jobs" / JOB / "state.db", done)
    assert done <= recorded < items

    # When it is listed through the CLI and through the API
    listed = subprocess.run(
        [sys.executable, "-m", "mapwise", "jobs", "--json", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        check=True,
    )
    [cli_job] = json.loads(listed.stdout)
    [api_job] = mapwise.list_resumable_jobs(state)
    progress = mapwise.get_job_progress(JOB, state)

    # Then each says what the database holds, and the job is resumable
    assert cli_job["progress"]["completed_items"] == recorded
    assert cli_job["status"] == "interrupted" and cli_job["resumable"] is True
    assert api_job.progress.completed_items == recorded
    assert progress.completed_items == recorded
    assert progress.pending_items == items - recorded
