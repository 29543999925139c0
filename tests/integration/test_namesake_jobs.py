"""Two jobs of the same id in two state directories: a resume kills its own job's
leftovers and never the running commands of its namesake.

A job's leftovers are found by their environment (``MAPWISE_JOB_ID``) as well as by
their slot notes; ``MAPWISE_JOB_DIR`` (the job's folder) tells the two jobs apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _mapwise(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapwise", *args], cwd=cwd, capture_output=True, text=True
    )


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if _alive(proc):
            proc.kill()
        proc.wait()


def test_a_resume_kills_its_jobs_leftovers_and_not_a_namesakes_commands(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    # Given a job "same" in state directory B, with an item in the DLQ, whose commands
    # noted the job's folder
    seen = tmp_path / "seen"
    seen.mkdir()
    (tmp_path / "items.json").write_text(json.dumps([0, 1, 2]))
    script = (
        'printf %s "$MAPWISE_JOB_DIR" > "$SEEN/$MAPWISE_ITEM_INDEX"; [ "$MAPWISE_ITEM_INDEX" != 1 ]'
    )
    workflow = {
        "name": "namesake",
        "env": {"SEEN": str(seen)},
        "map": {"input": "items.json", "agent_template": [{"shell": script}]},
    }
    (tmp_path / "wf.yml").write_text(json.dumps(workflow))
    ran = _mapwise("run", "wf.yml", "--state-dir", "B", "--job-id", "same", cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr  # completed with an item in the DLQ
    folder_b = os.path.realpath(tmp_path / "B" / "jobs" / "same")
    assert {p.read_text() for p in seen.iterdir()} == {folder_b}

    # And a command of the namesake job (state directory A) still running, and a
    # leftover of B's dead run that no slot note names
    folder_a = os.path.realpath(tmp_path / "A" / "jobs" / "same")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAPWISE_")}
    namesake = subprocess.Popen(
        SLEEPER,
        env={**base, "MAPWISE_JOB_ID": "same", "MAPWISE_JOB_DIR": folder_a},
        start_new_session=True,
    )
    leftover = subprocess.Popen(
        SLEEPER,
        env={**base, "MAPWISE_JOB_ID": "same", "MAPWISE_JOB_DIR": folder_b},
        start_new_session=True,
    )
    sleepers += [namesake, leftover]

    # When B's job resumes
    resumed = _mapwise("resume", "same", "--state-dir", "B", "--retry-failed", cwd=tmp_path)

    # Then it killed its own leftover and left the namesake's command running
    assert "killed 1 process(es) of this job's commands" in resumed.stderr, resumed.stderr
    deadline = time.monotonic() + 10
    while _alive(leftover) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(leftover)
    assert _alive(namesake)
