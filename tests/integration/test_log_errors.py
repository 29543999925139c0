"""A log that cannot be written never fails the work, and says so in the job's records.

The log folder of one item (or of the reduce phase) is replaced by a regular file before
its commands run, so opening the log fails with "Not a directory". The commands still run
and succeed or fail on their own; the step's record and the attempt's record (in the
job's database) carry ``log not written: <error>``.
"""

from __future__ import annotations

from pathlib import Path

from helpers.project import Project, mapreduce

JOB = "logless"
ITEMS = [{"id": "a"}, {"id": "b"}]


def _block_folder(project: Project, relative: str) -> str:
    """A setup step that puts a regular file where the job's ``logs/RELATIVE`` folder goes."""
    target = project.job_dir(JOB) / "logs" / relative
    return f'mkdir -p "{target.parent}" && : > "{target}"'


def test_an_item_whose_log_cannot_be_written_runs_and_its_attempt_says_why(
    project: Project,
) -> None:
    # Given two items whose command prints on both streams; the first item's log folder
    # is a regular file
    project.workflow(
        mapreduce(
            ['echo "out ${item.id}"; echo "err ${item.id}" >&2'],
            id="${item.id}",
            setup=[_block_folder(project, "items/0")],
        ),
        items=ITEMS,
    )

    # When the job runs
    project.run(job_id=JOB)

    # Then both items succeed and the job completes
    db = project.db(JOB)
    assert db.job()["status"] == "completed"
    assert db.statuses() == {"a": "succeeded", "b": "succeeded"}
    # And the first item's attempt and step record that its log was not written, and why
    [first] = db.attempts("a")
    assert first["log_path"] is None
    assert first["stderr_tail"].startswith("log not written: "), first
    assert "Not a directory" in first["stderr_tail"], first
    [step] = db.rows("SELECT * FROM steps WHERE attempt_id = ?", (first["id"],))
    assert step["stderr_tail"].splitlines() == [first["stderr_tail"], "err a"], step
    # And the second item's log holds its output, and its records no such note
    [second] = db.attempts("b")
    assert second["stderr_tail"] is None
    assert "out b" in Path(second["log_path"]).read_text()


def test_a_failed_command_keeps_its_own_error_beside_the_log_note(project: Project) -> None:
    # Given an item that fails with a message, its log folder a regular file
    project.workflow(
        mapreduce(
            ['echo "cannot go on" >&2; exit 3'],
            id="${item.id}",
            retry={"max_attempts": 1},
            setup=[_block_folder(project, "items/0")],
        ),
        items=ITEMS[:1],
    )

    # When the job runs
    project.run(job_id=JOB)

    # Then the attempt records the command's failure and the log's
    db = project.db(JOB)
    assert db.statuses() == {"a": "dlq"}
    [attempt] = db.attempts("a")
    assert attempt["exit_code"] == 3
    lines = attempt["stderr_tail"].splitlines()
    assert lines[0].startswith("log not written: ") and "Not a directory" in lines[0], lines
    assert lines[-1] == "cannot go on"
    # And the item's error names the command's message, not the log's
    assert db.item("a")["last_error"] == "step 1 exited 3: cannot go on"


def test_a_reduce_step_whose_log_cannot_be_written_records_why(project: Project) -> None:
    # Given a reduce step that prints, the reduce log folder a regular file
    project.workflow(
        mapreduce(
            ["true"],
            id="${item.id}",
            setup=[_block_folder(project, "reduce")],
            reduce=['echo "done ${map.successful}"'],
        ),
        items=ITEMS,
    )

    # When the job runs
    project.run(job_id=JOB)

    # Then it completes, and the reduce step's record says the log was not written
    db = project.db(JOB)
    assert db.job()["status"] == "completed"
    [step] = db.steps("reduce")
    assert step["error_kind"] is None
    assert step["log_path"] is None
    assert step["stderr_tail"].startswith("log not written: "), step
    assert "Not a directory" in step["stderr_tail"], step
