"""``mapwise run`` of a plain JSON array freezes it the fast way; the job it makes holds
the rows and digests of the item-at-a-time freeze (forced here by a ``max_items`` that
keeps every item)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ITEMS = [
    {"n": i, "text": "é, }, {" * (i % 3), "f": [1.0, 1e5, 0.1 * i], "big": 2**62 + i}
    for i in range(200)
]


def run_job(folder: Path, job_id: str, extra: str) -> tuple[Any, ...]:
    workflow = folder / f"{job_id}.yml"
    workflow.write_text(
        f"name: fast\nmap:\n  input: items.json\n  max_parallel: 8\n{extra}"
        '  agent_template:\n    - shell: "true"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "MAPWISE_STATE_DIR"}
    state = folder / "state"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapwise",
            "run",
            str(workflow),
            "--state-dir",
            str(state),
            "--job-id",
            job_id,
            "-q",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(f"file:{state / 'jobs' / job_id / 'state.db'}?mode=ro", uri=True)
    try:
        job = conn.execute("SELECT items_sha256, input_sha256, total_items FROM job").fetchone()
        rows = conn.execute("SELECT idx, item_id, data FROM items ORDER BY idx").fetchall()
        counts = conn.execute("SELECT status, n FROM item_counts WHERE n > 0").fetchall()
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()
    return job, rows, counts, schema


def test_a_run_freezes_a_json_array_as_the_streamed_freeze_does(tmp_path: Path) -> None:
    # Given a JSON array file of records (unicode, floats, big integers)
    (tmp_path / "items.json").write_text(json.dumps(ITEMS, indent=2, ensure_ascii=False))
    # When one job freezes it the fast way and another the item-at-a-time way
    fast = run_job(tmp_path, "fast", "")
    streamed = run_job(tmp_path, "streamed", f"  max_items: {len(ITEMS)}\n")
    # Then both jobs hold the same rows, digests, counts and schema, and ran every item
    assert fast == streamed
    assert fast[0][2] == len(ITEMS) == len(fast[1])
    assert fast[2] == [("succeeded", len(ITEMS))]
