"""Issue 14 points 9 and 10, through real ``mapwise`` subprocesses.

9: item data and command output reach every text output with their control characters
escaped (an ESC would start a sequence that rewrites the user's terminal); ``--json`` is
unchanged and ``logs`` prints the raw log on purpose. 10: purged items count in
``progress.purged_items``, so the counts add up to ``total_items``.
"""

from __future__ import annotations

import sys

import pytest

from helpers.project import CliRun, Project, mapreduce

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
HOSTILE_ID = f"a{CLEAR}b"
# the failing item's command writes a title change, an OSC 8 link and a C1 CSI to stderr
FAIL = (
    "printf 'x\\033]0;pwned\\007\\033]8;;http://evil\\033\\\\link\\033]8;;\\033\\\\"
    "\\302\\233y\\n' >&2; exit 3"
)


def assert_no_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"control characters {bad!r} in {text!r}"


def hostile_job(project: Project) -> CliRun:
    project.workflow(
        mapreduce([FAIL], id="${item.id}"),
        items=[{"id": HOSTILE_ID, "title": TITLE}],
    )
    return project.run_cli("--job-id", "evil")


def cli(project: Project, *args: str) -> CliRun:
    run = project.cli(*args, "--state-dir", str(project.state_dir))
    assert "Traceback" not in run.stderr
    return run


def test_every_text_output_escapes_item_data_and_command_output(project: Project) -> None:
    # Given a job whose one item has an ESC in its id and value and whose command writes
    # a title change, an OSC 8 link and a C1 CSI on stderr
    ran = hostile_job(project)

    # When each command that shows the item's data or its output prints text
    validated = project.cli("validate", str(project.workflow_path))
    outputs = {
        "run": ran,
        "validate": validated,
        "dlq list": cli(project, "dlq", "list", "evil"),
        "dlq show": cli(project, "dlq", "show", "evil", HOSTILE_ID),
        "status --items": cli(project, "status", "evil", "--items"),
        "jobs": cli(project, "jobs"),
    }

    # Then none has a control character but newline and tab, and each shows them escaped
    assert ran.returncode == 1, ran.stderr
    for name, run in outputs.items():
        assert run.returncode in (0, 1), (name, run.stderr)
        assert_no_controls(run.stdout)
        assert_no_controls(run.stderr)
    assert "a\\x1b[2Jb" in outputs["status --items"].stdout
    assert "a\\x1b[2Jb" in outputs["dlq list"].stdout
    assert "[0] a\\x1b[2Jb" in outputs["validate"].stdout
    assert "\\x1b]8;;http://evil" in outputs["dlq show"].stdout
    assert "\\x9by" in outputs["dlq show"].stdout
    assert "\\x1b]0;pwned" in ran.stderr  # the progress line of the failed item


def test_json_output_and_logs_keep_the_data_as_it_is(project: Project) -> None:
    # Given the same hostile job
    hostile_job(project)

    # When its DLQ is listed as JSON and its log printed
    listed = cli(project, "dlq", "list", "evil", "--json")
    log = cli(project, "logs", "evil", HOSTILE_ID)

    # Then JSON holds the exact id (JSON escapes the ESC itself) and logs is raw on purpose
    assert listed.json()[0]["item_id"] == HOSTILE_ID
    assert "\\u001b[2J" in listed.stdout
    assert "\x1b]0;pwned\x07" in log.stdout


def test_purged_items_are_counted_so_the_progress_adds_up(project: Project) -> None:
    # Given a job of 4 items, 1 of which failed and was purged from the DLQ
    project.workflow(mapreduce(['test "${item}" != bad']), items=["a", "bad", "c", "d"])
    ran = project.run_cli("--job-id", "p")
    assert ran.returncode == 1, ran.stderr
    purged = cli(project, "dlq", "purge", "p")
    assert purged.returncode == 0, purged.stderr

    # When its status and listing are read as JSON and as text
    status = cli(project, "status", "p", "--json", "--items").json()
    listed = cli(project, "jobs", "--all", "--json").json()
    text = cli(project, "status", "p").stdout

    # Then purged_items holds the purged item and the counts add up to the total
    progress = status["progress"]
    assert progress["purged_items"] == 1
    assert (
        progress["completed_items"]
        + progress["failed_items"]
        + progress["pending_items"]
        + progress["purged_items"]
        == progress["total_items"]
        == 4
    )
    assert listed[0]["progress"] == progress
    assert [i["status"] for i in status["items"]].count("purged") == 1
    assert "1 purged" in text
