"""Issue 14's hardening of runs: stops during the input command, a deleted job folder,
and advice that must work as printed (points 7, 12, 14 and 15).

Coordinators run as real ``python -m mapwise`` subprocesses in their own session and get
real signals (see :mod:`helpers.jobs`).
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.jobs import Workspace, block_while, item_command, wait_until, workspace
from helpers.project import run_main

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ITEMS = '[{"id": "a"}, {"id": "b"}]'


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def _input_job(ws: Workspace, body: str) -> None:
    """A job whose ``map.input`` is a command that notes its group, then runs ``body``."""
    command = f': > "$P/$$"; echo "start input 0 $$" >> "$M"; {body}; echo \'{ITEMS}\''
    ws.write_workflow([item_command("true")], input=command, retry={"max_attempts": 1})


def _input_started(ws: Workspace) -> bool:
    return any(m.name == "input" for m in ws.starts())


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_signal_during_the_input_command_stops_it_and_leaves_the_job_resumable(
    ws: Workspace, sig: int, code: int
) -> None:
    # Given a job whose input command blocks while a flag file exists
    slow = ws.flag("slow")
    slow.touch()
    _input_job(ws, f'while [ -e "{slow}" ]; do sleep 0.05; done')
    job = f"input-{code}"
    coordinator = ws.start_run(job)
    coordinator.wait_for(
        lambda: _input_started(ws),
        what="the input command",
    )

    # When the coordinator gets one signal while the input command runs
    coordinator.send(sig)
    returncode = coordinator.wait()

    # Then it exits with the signal's code, the input command's group is dead
    assert returncode == code, coordinator.stderr
    assert ws.live_commands() == []
    # And the job is interrupted (not failed), no items frozen, and says how to resume
    assert ws.db(job).job()["status"] == "interrupted"
    assert ws.db(job).items() == []
    assert f"mapwise resume {job}" in coordinator.stderr

    # When the input can end and the job is resumed
    slow.unlink()
    done = ws.resume(job)

    # Then the resume reads the input again and completes the items
    assert done.returncode == 0, done.stderr
    assert ws.count("start", "input") == 2
    assert {r["item_id"]: r["status"] for r in ws.db(job).items()} == {
        "a": "succeeded",
        "b": "succeeded",
    }


def test_a_second_sigint_during_the_input_command_kills_its_group(ws: Workspace) -> None:
    # Given an input command that survives TERM (it notes each one and goes on)
    termed = ws.flag("termed")
    _input_job(ws, f"trap 'echo > \"{termed}\"' TERM; while :; do sleep 0.05; done")
    coordinator = ws.start_run("twice")
    coordinator.wait_for(
        lambda: _input_started(ws),
        what="the input command",
    )

    # When the coordinator gets SIGINT, the command shrugs off the TERM, and a second SIGINT
    coordinator.send(signal.SIGINT)
    coordinator.wait_for(termed.exists, what="the TERM")
    coordinator.send(signal.SIGINT)
    returncode = coordinator.wait()

    # Then mapwise exits at once with 130 and no process of the input command is left
    assert returncode == 130, coordinator.stderr
    wait_until(lambda: ws.live_commands() == [], what="the input command's group to die")


def _completed_job(ws: Workspace, job: str, template: str = "true") -> None:
    ws.write_workflow(
        [item_command(template)], items=[{"id": "a"}, {"id": "b"}], retry={"max_attempts": 1}
    )
    ws.finish(ws.start_run(job))


def test_import_into_another_state_dir_advises_a_resume_that_names_it(ws: Workspace) -> None:
    # Given a job exported from one state directory
    _completed_job(ws, "hn")
    exported = ws.root / "hn.ckpt"
    assert (
        run_main("export", "hn", "-o", str(exported), "--state-dir", str(ws.state_dir)).returncode
        == 0
    )
    other = ws.root / "st2"

    # When it is imported into another state directory
    done = run_main("import", str(exported), "--state-dir", str(other))

    # Then the advised command names that state directory, and works as printed
    assert done.returncode == 0, done.stderr
    advice = done.stdout.split("continue it with: ", 1)[1].strip()
    assert advice == shlex.join(["mapwise", "resume", "hn", "--state-dir", str(other)])
    assert run_main(*shlex.split(advice)[1:]).returncode != 2


def test_a_completed_job_with_dlq_items_advises_dlq_retry_not_resume(ws: Workspace) -> None:
    # Given a job whose item b fails its only attempt
    ws.write_workflow(
        [item_command('[ "$MAPWISE_ITEM_ID" != b ]')],
        items=[{"id": "a"}, {"id": "b"}],
        retry={"max_attempts": 1},
    )

    # When it runs to its end
    done = ws.finish(ws.start_run("dlq"))

    # Then it advises the command that retries the DLQ, not a resume that does nothing
    assert "completed" in done.stderr, done.stderr
    assert "resume with: mapwise resume" not in done.stderr
    assert f"dlq retry dlq --state-dir {ws.state_dir}" in done.stderr
    retried = ws.finish(ws.start("dlq", "retry", "dlq"))
    assert ws.count("start", "b") == 2, retried.stderr


def test_a_job_folder_deleted_while_its_job_runs_is_reported_lost(ws: Workspace) -> None:
    # Given a job whose items block while a flag file exists, one of them running
    slow = ws.flag("slow")
    slow.touch()
    ws.write_workflow(
        [item_command(block_while("SLOW"))],
        items=[{"id": "a"}, {"id": "b"}],
        env={"SLOW": str(slow)},
        max_parallel=1,
    )
    coordinator = ws.start_run("gone")
    coordinator.wait_for(lambda: len(ws.starts()) == 1, what="an item")

    # When the job's folder is deleted while the job runs, and the items can then finish
    shutil.rmtree(ws.state_dir / "jobs" / "gone")
    slow.unlink()
    returncode = coordinator.wait()

    # Then the run does not call the job completed: it says the job is lost, non-zero
    stderr = coordinator.stderr
    assert returncode == 4, stderr
    assert "completed" not in stderr
    assert "was deleted" in stderr
    # And no half of the deleted job is left for `jobs` to list
    listed = ws.inspect("jobs", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert not (ws.state_dir / "jobs" / "gone").exists()
