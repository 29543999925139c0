"""Exit codes and messages of the CLI when the job's database fails, by what failed.

A database locked by another process is exit 3 (held by another live process), a
read-only one exit 1 with what to make writable, and only a damaged one exit 4 with
"repair"; never a traceback.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.project import Project, mapreduce
from mapwise.store import db

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and mounts")


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.workflow(mapreduce(["true"]), items=[1, 2, 3])
    return project


@pytest.fixture()
def job(project: Project) -> str:
    """A finished job of three items, run in-process."""
    job_id: str = project.run().job_id
    return job_id


def database(project: Project, job: str) -> Path:
    path: Path = project.job_dir(job) / "state.db"
    return path


@pytest.fixture()
def locked(project: Project, job: str) -> Iterator[None]:
    """Another connection holds the job's database file lock, readers shut out too."""
    holder = sqlite3.connect(database(project, job), isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    yield
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize("command", [["status"], ["dlq", "list"], ["verify"]])
def test_a_locked_database_is_busy_not_damaged(
    project: Project, job: str, locked: None, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # Given the job's database locked by another process, and a short busy timeout
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)

    # When a command reads the job through the CLI's entry point
    done = project.inspect(*command, job)

    # Then it exits 3 (held by another live process) and says so; no "repair"
    assert done.returncode == 3, done.stderr
    assert "locked by another process" in done.stderr
    assert "damaged" not in done.stderr
    assert "repair" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_database_of_garbage_is_damaged(project: Project, job: str) -> None:
    # Given the job's database overwritten with bytes that are no SQLite file
    path = database(project, job)
    path.write_bytes(bytes(range(256)) * 64)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)

    # When `mapwise status` runs for real
    done = project.cli("status", job, "--state-dir", str(project.state_dir))

    # Then it is exit 4 with the way out, and no traceback
    assert done.returncode == 4, done.stderr
    assert "damaged" in done.stderr
    assert "mapwise repair" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="a read-only bind mount needs root"
)
def test_a_read_only_state_directory_is_not_damage(project: Project, job: str) -> None:
    # Given the state directory bind-mounted read-only over itself (root ignores modes)
    state = str(project.state_dir)
    if subprocess.run(["mount", "--bind", state, state]).returncode:
        pytest.skip("mount --bind is not permitted here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", state], check=True)
        # When `mapwise status` runs for real
        done = project.cli("status", job, "--state-dir", state)
    finally:
        subprocess.run(["umount", state], check=True)

    # Then it reads the job normally (issue 14.2: read-only is not damage, and a
    # reading command only reads); no "repair"
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
    assert "repair" not in done.stderr
    assert "Traceback" not in done.stderr
