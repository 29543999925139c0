"""Damaged, old and moved state: verify finds it, resume refuses it, repair brings it back.

Each test damages real files a real job wrote (the database, its WAL, checkpoints) and
checks what the commands say and do, through the real entry point.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.project import FIXTURES, Project, mapreduce

V1 = FIXTURES / "v1"
MARK = 'echo "$MAPWISE_ITEM_ID" >> "$MARKS"'


def marked_workflow(project: Project, count: int, *, sleep: float = 0.0) -> None:
    body = f"{MARK}; sleep {sleep}" if sleep else MARK
    project.workflow(mapreduce([body], max_parallel=2), items=list(range(count)))


def marks(project: Project) -> list[str]:
    path = project.path("marks")
    return path.read_text().split() if path.exists() else []


def env(project: Project, **extra: str) -> dict[str, str]:
    return {"MARKS": str(project.path("marks")), **extra}


def kill_run_midway(project: Project, job_id: str, *, after_marks: int, **extra: str) -> None:
    """``mapwise run`` the workflow as ``job_id`` and ``kill -9`` its whole session once
    ``after_marks`` items have marked."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mapwise",
            "run",
            str(project.workflow_path),
            "--job-id",
            job_id,
            "--state-dir",
            str(project.state_dir),
            "-q",
        ],
        cwd=project.root,
        env={**os.environ, **env(project), **extra},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(marks(project)) < after_marks and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def corrupt(path: Path, offsets: list[int], data: bytes = b"\xde\xad\xbe\xef" * 64) -> None:
    with path.open("r+b") as handle:
        for offset in offsets:
            handle.seek(offset)
            handle.write(data)


# -- the version-1 fixtures ------------------------------------------------------------


def test_version_1_checkpoint_still_imports_and_resumes(project: Project) -> None:
    # Given the checked-in checkpoint written by format version 1 (a job with one DLQ item)
    workflow = project.root / "v1" / "workflow.yml"
    shutil.copytree(V1, workflow.parent)

    # When it is imported with the workflow's place on this machine, and resumed
    imported = project.cli(
        "import",
        str(V1 / "job.ckpt"),
        "--workflow",
        str(workflow),
        "--state-dir",
        str(project.state_dir),
    )
    assert imported.returncode == 0, imported.stderr
    resumed = project.cli(
        "resume",
        "fixture-v1",
        "--retry-failed",
        "--state-dir",
        str(project.state_dir),
        env=env(project),
    )

    # Then only the DLQ item ran again (and failed again): succeeded items never rerun
    assert resumed.returncode == 1, resumed.stderr
    assert marks(project) == ["2", "2"]  # item "bad" (id 2), two attempts
    status = project.inspect("status", "fixture-v1", "--json").json()
    assert status["progress"] == {
        "total_items": 4,
        "completed_items": 3,
        "failed_items": 1,
        "pending_items": 0,
        "purged_items": 0,
        "completion_percentage": 75.0,
    }
    assert len(status["runs"]) == 2


def test_version_1_database_still_opens_and_verifies(project: Project) -> None:
    # Given the checked-in database written by schema version 1
    job_dir = project.state_dir / "jobs" / "fixture-v1"
    job_dir.mkdir(parents=True)
    shutil.copy(V1 / "state.db", job_dir / "state.db")

    # Then status, the DLQ and verify read it
    status = project.inspect("status", "fixture-v1", "--json")
    assert status.returncode == 0, status.stderr
    assert status.json()["dlq_count"] == 1
    [entry] = project.inspect("dlq", "list", "fixture-v1", "--json").json()
    assert (entry["item_id"], entry["item"], entry["attempts"]) == ("2", "bad", 2)
    verified = project.inspect("verify", "fixture-v1")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_newer_checkpoint_format_is_refused_with_a_clear_message(project: Project) -> None:
    # Given a checkpoint whose header claims a future format version
    with gzip.open(V1 / "job.ckpt", "rb") as packed:
        lines = packed.read().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["version"] = 99
    lines[0] = json.dumps(header).encode() + b"\n"
    future = project.path("future.ckpt")
    with gzip.open(future, "wb") as packed:
        packed.write(b"".join(lines))

    # Then import refuses it with exit 4 and says why
    refused = project.inspect("import", str(future))
    assert refused.returncode == 4
    assert "newer than this mapwise" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_newer_database_schema_is_refused(project: Project) -> None:
    job_dir = project.state_dir / "jobs" / "fixture-v1"
    job_dir.mkdir(parents=True)
    shutil.copy(V1 / "state.db", job_dir / "state.db")
    import sqlite3

    conn = sqlite3.connect(job_dir / "state.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    refused = project.inspect("status", "fixture-v1")
    assert refused.returncode == 4
    assert "schema version 99" in refused.stderr


# -- damage ------------------------------------------------------------------------------


def test_damaged_database_is_found_refused_and_rebuilt(project: Project) -> None:
    # Given a finished job with a DLQ item, so that resume has work, and its checkpoints
    project.workflow(
        mapreduce([f'{MARK}; test "${{item}}" != 7'], max_parallel=2),
        items=list(range(300)),
    )
    first = project.run_cli("--job-id", "dmg", "-q", env=env(project))
    assert first.returncode == 1, first.stderr
    before = len(marks(project))
    database = project.job_dir("dmg") / "state.db"
    assert not Path(f"{database}-wal").exists()  # folded into the file at the end

    # When pages in the middle of the database are overwritten
    size = database.stat().st_size
    corrupt(database, [size // 3, size // 2, (2 * size) // 3])

    # Then verify reports damage (exit 4) and resume refuses, naming repair
    verified = project.cli("verify", "dmg", "--state-dir", str(project.state_dir))
    assert verified.returncode == 4, verified.stdout
    assert "damage: database" in verified.stdout
    refused = project.cli(
        "resume",
        "dmg",
        "--retry-failed",
        "--state-dir",
        str(project.state_dir),
        env=env(project),
    )
    assert refused.returncode == 4
    assert "mapwise repair dmg" in refused.stderr
    assert len(marks(project)) == before  # nothing ran

    # When repaired, then resumed
    repaired = project.cli("repair", "dmg", "--state-dir", str(project.state_dir))
    assert repaired.returncode == 0, repaired.stderr
    assert "rebuilt the database from checkpoint" in repaired.stdout
    backups = list(project.job_dir("dmg").glob("backup-*/state.db"))
    assert backups, "the damaged database must be kept beside the job"
    resumed = project.cli(
        "resume",
        "dmg",
        "--retry-failed",
        "--state-dir",
        str(project.state_dir),
        env=env(project),
    )

    # Then the job resumes from the checkpoint: only item 7 ran again (twice: it still fails)
    assert resumed.returncode == 1, resumed.stderr
    assert marks(project)[before:] == ["7"]
    assert project.cli("verify", "dmg", "--state-dir", str(project.state_dir)).returncode == 0


def test_truncated_checkpoint_is_reported_and_moved_aside(project: Project) -> None:
    marked_workflow(project, 20)
    assert project.run_cli("--job-id", "trunc", "-q", env=env(project)).returncode == 0
    checkpoints = sorted((project.job_dir("trunc") / "checkpoints").glob("*.ckpt"))
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    listed = project.inspect("checkpoints", "trunc", "--json").json()
    assert [c["valid"] for c in listed] == [True] * (len(checkpoints) - 1) + [False]
    verified = project.inspect("verify", "trunc")
    assert verified.returncode == 4
    assert f"checkpoint {len(checkpoints)}" in verified.stdout

    repaired = project.inspect("repair", "trunc")
    assert repaired.returncode == 0, repaired.stderr
    assert "moved damaged checkpoint" in repaired.stdout
    assert not newest.exists()
    assert list(project.job_dir("trunc").glob("backup-*/" + newest.name))
    assert project.inspect("verify", "trunc").returncode == 0


def test_orphaned_checkpoint_temporary_file_is_noted_and_cleaned(project: Project) -> None:
    marked_workflow(project, 5)
    assert project.run_cli("--job-id", "tmpf", "-q", env=env(project)).returncode == 0
    orphan = project.job_dir("tmpf") / "checkpoints" / "ckpt-000099.ckpt.tmp"
    orphan.write_bytes(b"half a checkpoint")

    verified = project.inspect("verify", "tmpf")
    assert verified.returncode == 1  # a note, not damage
    assert "orphaned temporary file" in verified.stdout
    assert project.inspect("repair", "tmpf").returncode == 0
    assert not orphan.exists()
    assert project.inspect("verify", "tmpf").returncode == 0


def test_resume_removes_a_checkpoint_write_that_a_crash_cut_short(project: Project) -> None:
    # Regression (long torture run, seed 4079345230): a kill -9 during a checkpoint write
    # left ckpt-*.ckpt.tmp; every later resume kept it, so verify of the completed job
    # still exited 1
    # Given a job killed with kill -9 mid-run, and the temporary file of a cut-short write
    marked_workflow(project, 200, sleep=0.02)
    kill_run_midway(project, "cut", after_marks=20)
    orphan = project.job_dir("cut") / "checkpoints" / "ckpt-000099.ckpt.tmp"
    orphan.write_bytes(b"half a checkpoint")

    # When the job is resumed to its end
    done = project.cli("resume", "cut", "--state-dir", str(project.state_dir), env=env(project))

    # Then the temporary file is gone and verify has nothing to say
    assert done.returncode == 0, done.stderr
    assert not orphan.exists()
    verified = project.inspect("verify", "cut")
    assert verified.returncode == 0, verified.stdout


def test_resume_of_a_completed_job_removes_its_cut_short_final_checkpoint(
    project: Project,
) -> None:
    # Regression (long torture run, seed 1766456350): a kill -9 during the checkpoint
    # written after the job's last step left ckpt-*.ckpt.tmp beside a completed job; the
    # resume that found nothing to do returned before removing it, so verify exited 1
    # Given a completed job and the temporary file of a cut-short final write
    marked_workflow(project, 5)
    first = project.cli(
        "run",
        "wf.yml",
        "--job-id",
        "last",
        "--state-dir",
        str(project.state_dir),
        env=env(project),
    )
    assert first.returncode == 0, first.stderr
    orphan = project.job_dir("last") / "checkpoints" / "ckpt-000099.ckpt.tmp"
    orphan.write_bytes(b"half a checkpoint")

    # When it is resumed (there is nothing to do)
    done = project.cli("resume", "last", "--state-dir", str(project.state_dir), env=env(project))

    # Then the temporary file is gone and verify has nothing to say
    assert done.returncode == 0, done.stderr
    assert "nothing to resume" in done.stderr
    assert not orphan.exists()
    verified = project.inspect("verify", "last")
    assert verified.returncode == 0, verified.stdout


def test_deleted_wal_is_detected_and_repaired_from_the_newest_checkpoint(
    project: Project,
) -> None:
    # Given a job killed with kill -9 mid-run, its WAL holding the latest commits
    marked_workflow(project, 200, sleep=0.02)
    kill_run_midway(project, "wal", after_marks=60, MAPWISE_CHECKPOINT_SECONDS="0.2")
    database = project.job_dir("wal") / "state.db"
    wal = Path(f"{database}-wal")
    assert wal.exists()

    # When the WAL is deleted
    wal.unlink()
    Path(f"{database}-shm").unlink(missing_ok=True)

    # Then verify finds the loss, resume refuses, repair rebuilds, and resume finishes
    assert project.cli("verify", "wal", "--state-dir", str(project.state_dir)).returncode == 4
    refused = project.cli("resume", "wal", "--state-dir", str(project.state_dir), env=env(project))
    assert refused.returncode == 4
    assert "repair" in refused.stderr
    assert project.cli("repair", "wal", "--state-dir", str(project.state_dir)).returncode == 0
    done = project.cli("resume", "wal", "--state-dir", str(project.state_dir), env=env(project))
    assert done.returncode == 0, done.stderr
    status = project.inspect("status", "wal", "--json").json()
    assert status["progress"]["completed_items"] == 200


def test_resume_from_an_older_checkpoint_reruns_what_came_after(project: Project) -> None:
    marked_workflow(project, 10)
    assert project.run_cli("--job-id", "rew", "-q", env=env(project)).returncode == 0
    listed = project.inspect("checkpoints", "rew", "--json").json()
    first = listed[0]
    assert (first["checkpoint"], first["phase"], first["completed_items"]) == (1, "map", 0)

    resumed = project.cli(
        "resume",
        "rew",
        "--from-checkpoint",
        "1",
        "--state-dir",
        str(project.state_dir),
        env=env(project),
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "rebuilt from checkpoint 1" in resumed.stderr
    assert sorted(marks(project), key=int) == sorted([str(i) for i in range(10)] * 2, key=int)
    assert list(project.job_dir("rew").glob("backup-*/state.db"))
    unknown = project.cli(
        "resume", "rew", "--from-checkpoint", "42", "--state-dir", str(project.state_dir)
    )
    assert unknown.returncode == 2
    assert "no checkpoint 42" in unknown.stderr


def test_export_then_import_moves_a_job(project: Project, tmp_path: Path) -> None:
    marked_workflow(project, 6)
    assert project.run_cli("--job-id", "mv", "-q", env=env(project)).returncode == 0
    exported = project.inspect("export", "mv", "-o", str(tmp_path / "mv.ckpt"))
    assert exported.returncode == 0, exported.stderr

    other = tmp_path / "elsewhere"
    imported = project.cli("import", str(tmp_path / "mv.ckpt"), "--state-dir", str(other))
    assert imported.returncode == 0, imported.stderr
    again = project.cli("import", str(tmp_path / "mv.ckpt"), "--state-dir", str(other))
    assert again.returncode == 2
    assert "already exists" in again.stderr

    status = project.cli("status", "mv", "--json", "--state-dir", str(other))
    assert json.loads(status.stdout)["progress"]["completed_items"] == 6


def test_dlq_purge_gives_up_on_items(project: Project) -> None:
    project.workflow(mapreduce(['test "${item}" != 1'], max_parallel=2), items=[0, 1, 2])
    assert project.run_cli("--job-id", "pg", "-q").returncode == 1
    assert [j["job_id"] for j in project.inspect("jobs", "--json").json()] == ["pg"]

    purged = project.inspect("dlq", "purge", "pg")
    assert purged.returncode == 0
    assert "1 item(s) purged" in purged.stdout
    assert project.inspect("dlq", "list", "pg", "--json").json() == []
    assert project.inspect("jobs", "--json").json() == []
    nothing = project.cli("resume", "pg", "--state-dir", str(project.state_dir))
    assert nothing.returncode == 0
    assert "nothing to resume" in nothing.stderr
