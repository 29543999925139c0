"""The start path makes every check, then says the job exists (``JobCreated``), then runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mapwise
from helpers.project import Project, mapreduce
from mapwise.engine.events import Event, JobCreated, JobStarted
from mapwise.errors import JobLockedError, UserError
from mapwise.reports import JobOutcome
from mapwise.store.lock import JobLock, refuse_if_held


def test_job_created_is_the_first_event_and_names_the_job(project: Project) -> None:
    project.workflow(mapreduce(["true"]), items=[1, 2])
    events: list[Event] = []

    result = project.run(job_id="chosen", observers=[events.append])

    assert events[0] == JobCreated("chosen")
    assert isinstance(events[1], JobStarted)
    assert sum(isinstance(e, JobCreated) for e in events) == 1
    assert (result.job_id, result.outcome) == ("chosen", JobOutcome.COMPLETED)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"job_id": "../escape"}, "invalid job id"),
        ({"max_parallel": 0}, "at least 1"),
        ({"scheduler": "tcp://127.0.0.1:1"}, "--scheduler"),
    ],
)
def test_a_refused_start_publishes_nothing_and_makes_no_job(
    project: Project, options: dict[str, object], message: str
) -> None:
    project.workflow(mapreduce(["touch ran"]), items=[1])
    events: list[Event] = []

    with pytest.raises(UserError, match=message):
        project.run(observers=[events.append], **options)

    assert events == []
    jobs = project.state_dir / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert not project.path("ran").exists()


def test_an_existing_id_is_refused_without_an_event(project: Project) -> None:
    project.workflow(mapreduce(["true"]), items=[1])
    project.run(job_id="taken")
    events: list[Event] = []

    with pytest.raises(UserError, match="already exists"):
        project.run(job_id="taken", observers=[events.append])

    assert events == []
    assert len(project.db("taken").runs()) == 1


def test_refuse_if_held_names_the_holder_and_leaves_a_free_lock_untouched(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "lock"
    # Given no lock file: nothing is raised and nothing is made
    refuse_if_held(lock, "j")
    assert not lock.exists()

    # Given a lock this process holds: it is named, and the file is not rewritten
    with JobLock(lock).acquire("j"):
        before = lock.read_bytes()
        with pytest.raises(JobLockedError, match=f"pid {os.getpid()}") as caught:
            refuse_if_held(lock, "j")
        assert caught.value.exit_code == 3
        assert lock.read_bytes() == before

    # Given the lock released: a stale holder in the file does not count
    refuse_if_held(lock, "j")


def test_the_public_values_are_exported() -> None:
    for name in ("JobResult", "JobOutcome", "StartOptions", "ResumeOptions", "Restored"):
        assert name in mapwise.__all__
        assert getattr(mapwise, name).__module__ in {"mapwise.types", "mapwise.reports"}
    assert mapwise.validate_workflow.__module__ == "mapwise.api"
