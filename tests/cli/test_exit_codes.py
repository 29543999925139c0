"""Every way a run ends, and the exit code a shell sees for it.

The engine names the outcome (``JobOutcome``); one table at the command line's edge
(``mapwise.cli.exit_codes``) turns it into a number. The table is checked whole here, and
each outcome is reached through the real ``python -m mapwise`` where that can be done in
a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.project import Project, mapreduce
from mapwise.cli.exit_codes import EXIT_CODES
from mapwise.reports import JobOutcome
from mapwise.store.lock import JobLock, read_holder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells and signals")

EXPECTED = {
    JobOutcome.COMPLETED: 0,
    JobOutcome.COMPLETED_WITH_DLQ: 1,
    JobOutcome.FAILED: 1,
    JobOutcome.BUDGET_SPENT: 1,  # SPEC section 9: the job budget is spent
    JobOutcome.INTERRUPTED_BY_SIGINT: 130,
    JobOutcome.INTERRUPTED_BY_SIGTERM: 143,
    JobOutcome.EXECUTOR_LOST: 1,
    JobOutcome.NOTHING_TO_RESUME: 0,
}


# -- the table ---------------------------------------------------------------------------


def test_the_table_names_every_outcome_once() -> None:
    assert set(EXIT_CODES) == set(JobOutcome)


def test_the_table_gives_the_documented_codes() -> None:
    assert dict(EXIT_CODES) == EXPECTED


@pytest.mark.parametrize(
    ("signum", "outcome"),
    [
        (signal.SIGINT, JobOutcome.INTERRUPTED_BY_SIGINT),
        (signal.SIGTERM, JobOutcome.INTERRUPTED_BY_SIGTERM),
        (None, JobOutcome.INTERRUPTED_BY_SIGINT),  # a stop asked for without a signal
    ],
)
def test_a_clean_stop_names_its_signal(signum: int | None, outcome: JobOutcome) -> None:
    assert JobOutcome.interrupted_by(signum) is outcome


# -- through the real entry point -------------------------------------------------------


def test_completed_exits_0(project: Project) -> None:
    project.workflow(mapreduce(["true"]), items=[1, 2])
    run = project.run_cli()
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == f"job {run.job_id}"


def test_completed_with_items_in_the_dlq_exits_1(project: Project) -> None:
    project.workflow(mapreduce(["exit ${item}"], retry={"max_attempts": 1}), items=[0, 3])
    run = project.run_cli()
    assert run.returncode == 1, run.stderr
    assert f"job {run.job_id} completed: 1 succeeded, 1 in the DLQ" in run.stderr


def test_a_failed_setup_exits_1(project: Project) -> None:
    project.workflow(mapreduce(["true"], setup=["exit 5"]), items=[1])
    run = project.run_cli()
    assert run.returncode == 1, run.stderr
    assert f"job {run.job_id} failed" in run.stderr


def test_resuming_a_finished_job_exits_0_and_runs_nothing(project: Project) -> None:
    # Given a job that completed with an empty DLQ
    project.workflow(mapreduce(["echo ran >> ran.log"]), items=[1])
    first = project.run_cli()
    assert first.returncode == 0, first.stderr

    # When it is resumed
    again = project.cli("resume", first.job_id, "--state-dir", str(project.state_dir))

    # Then it exits 0, says so, and nothing ran again
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0] == f"job {first.job_id}"
    assert "nothing to resume" in again.stderr
    assert project.lines("ran.log") == ["ran"]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_clean_stop_exits_128_plus_the_signal(project: Project, sig: int, code: int) -> None:
    # Given a job whose one item blocks after saying it started
    project.workflow(mapreduce(["touch started; sleep 30"]), items=[1])
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "mapwise", "run", "wf.yml", "--state-dir", "state"],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the signal goes to the coordinator alone
    )
    try:
        deadline = time.monotonic() + 30
        while not project.path("started").exists():
            assert coordinator.poll() is None, coordinator.communicate()[1]
            assert time.monotonic() < deadline, "the item never started"
            time.sleep(0.02)

        # When the coordinator gets one signal
        os.kill(coordinator.pid, sig)
        _, stderr = coordinator.communicate(timeout=60)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()

    # Then it stops cleanly, resumable, with 128 + the signal
    assert coordinator.returncode == code, stderr
    assert "interrupted" in stderr
    assert "resume with" in stderr


@pytest.mark.slow
def test_an_unreachable_dask_scheduler_exits_1_and_keeps_the_job(project: Project) -> None:
    pytest.importorskip("distributed")
    # Given a workflow sent to a scheduler nobody listens on (the connect times out in 10 s)
    project.workflow(mapreduce(["true"]), items=[1])

    # When it is run there
    run = project.run_cli("--executor", "dask", "--scheduler", "tcp://127.0.0.1:1")

    # Then the job exists, stopped and resumable, and the exit code is 1
    assert run.returncode == 1, run.stderr
    assert f"job {run.job_id} interrupted" in run.stderr
    assert f"mapwise resume {run.job_id}" in run.stderr


# -- refusals: before any job exists ------------------------------------------------------


def _no_jobs(project: Project) -> bool:
    jobs = project.state_dir / "jobs"
    return not jobs.exists() or not any(jobs.iterdir())


def test_a_refused_placement_exits_2_before_any_job_line(project: Project) -> None:
    project.workflow(mapreduce(["touch ran"]), items=[1])
    run = project.run_cli("--scheduler", "tcp://127.0.0.1:1")  # without --executor dask
    assert run.returncode == 2, run.stderr
    assert not run.stderr.startswith("job "), run.stderr
    assert "--scheduler" in run.stderr
    assert _no_jobs(project)
    assert not project.path("ran").exists()


def test_a_bad_max_parallel_in_the_workflow_exits_2_before_any_job_line(
    project: Project,
) -> None:
    # Given a workflow whose max_parallel names an env variable that holds 0
    spec = mapreduce(["touch ran"], max_parallel="${NPAR}", env={"NPAR": "0"})
    project.workflow(spec, items=[1])

    run = project.run_cli()

    # Then the start is refused with 2, before any job line and without a job
    assert run.returncode == 2, run.stderr
    assert not run.stderr.startswith("job "), run.stderr
    assert "at least 1" in run.stderr
    assert _no_jobs(project)


def test_a_job_held_by_a_live_process_exits_3_and_its_lock_is_only_read(
    project: Project,
) -> None:
    # Given a job that exists, whose lock this test process holds
    project.workflow(mapreduce(["touch ran"]), items=[1])
    first = project.run_cli("--job-id", "held")
    assert first.returncode == 0, first.stderr
    Path(project.path("ran")).unlink()
    lock_path = project.job_dir("held") / "lock"
    with JobLock(lock_path).acquire("held"):
        before = lock_path.read_bytes()

        # When a new run asks for the same id
        again = project.run_cli("--job-id", "held")

        # Then it is refused with 3, naming the holder, and the lock file still names it
        assert again.returncode == 3, again.stderr
        assert f"pid {os.getpid()}" in again.stderr
        assert not again.stderr.startswith("job "), again.stderr
        assert lock_path.read_bytes() == before
        holder = read_holder(lock_path)
        assert holder is not None and holder.pid == os.getpid()
    assert not project.path("ran").exists()


def test_warnings_follow_the_job_line(project: Project) -> None:
    # Given a workflow with a prodigy key that mapwise ignores (a warning)
    spec = mapreduce(["true"])
    spec["merge"] = {"commands": [{"shell": "true"}]}
    project.write("wf.yml", json.dumps(spec))
    project.write_items([1])

    run = project.run_cli()

    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"job {run.job_id}"
    assert lines[1].startswith("warning: "), run.stderr
