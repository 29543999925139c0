"""SIGINT and SIGTERM stop a running job cleanly; a second signal stops it at once.

The coordinator runs as a real ``python -m mapwise`` subprocess in its own session, so
the test signals it alone; what happened is read from the marker lines the commands
wrote, the pids they noted, and the job's database.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.jobs import Workspace, block_while, item_command, wait_until, workspace

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ITEMS = [{"id": f"i{n}"} for n in range(5)]
RUNNING = 3  # max_parallel: the items in flight when the signal comes


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def _blocking_job(ws: Workspace, body: str) -> Path:
    """Items that run ``body`` (which blocks while the ``slow`` flag exists), one attempt."""
    slow = ws.flag("slow")
    slow.touch()
    ws.write_workflow(
        [item_command(body)],
        items=ITEMS,
        env={"SLOW": str(slow)},
        max_parallel=RUNNING,
        retry={"max_attempts": 1},
    )
    return slow


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_signal_interrupts_the_running_attempts_and_resume_finishes_them(
    ws: Workspace, sig: int, code: int
) -> None:
    # Given a job whose items block while a flag file exists, three of them running
    slow = _blocking_job(ws, block_while("SLOW"))
    job = f"stop-{code}"
    coordinator = ws.start_run(job)
    coordinator.wait_for(
        lambda: len(ws.starts()) == RUNNING,
        what="three items running",
    )
    running = {m.name: m.pid for m in ws.starts()}

    # When the coordinator gets the signal
    coordinator.send(sig)
    returncode = coordinator.wait()

    # Then it exits with the signal's code and says how to resume
    stderr = coordinator.stderr
    assert returncode == code, stderr
    assert stderr.splitlines()[0] == f"job {job}"
    assert f"mapwise resume {job}" in stderr
    # And the running commands' process groups are dead
    assert ws.live_commands() == []
    # And their attempts are recorded interrupted, not counted, the items pending again
    db = ws.db(job)
    attempts = db.attempts()
    assert {a["item_id"]: a["outcome"] for a in attempts} == dict.fromkeys(running, "interrupted")
    assert all(a["duration"] > 0 for a in attempts)  # they ran until the signal came
    items = {r["item_id"]: r for r in db.items()}
    for item_id in running:
        assert (items[item_id]["status"], items[item_id]["attempts"]) == ("pending", 0)
    assert db.job()["status"] == "interrupted"
    first = ws.inspect("status", job, "--json").json()
    assert [r["outcome"] for r in first["runs"]] == ["interrupted"]
    assert first["status"] == "interrupted"
    assert first["durations"]["wall_seconds"] > 0

    # When the cause is gone and the job resumes
    slow.unlink()
    done = ws.resume(job)

    # Then every item succeeds with one counted attempt, although max_attempts is 1
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == f"job {job}"
    items = {r["item_id"]: r for r in db.items()}
    assert {i: (r["status"], r["attempts"]) for i, r in items.items()} == {
        i["id"]: ("succeeded", 1) for i in ITEMS
    }
    outcomes: dict[str, list[str]] = {}
    for attempt in db.attempts():
        outcomes.setdefault(attempt["item_id"], []).append(attempt["outcome"])
    for item_id in running:
        assert outcomes[item_id] == ["interrupted", "succeeded"]
    assert all(ws.count("end", i["id"]) == 1 for i in ITEMS)
    # And the runs and the wall time accumulate over both runs
    last = ws.inspect("status", job, "--json").json()
    assert [r["outcome"] for r in last["runs"]] == ["interrupted", "completed"]
    assert last["durations"]["wall_seconds"] >= first["durations"]["wall_seconds"]
    assert last["status"] == "completed"


def test_a_second_signal_stops_at_once_and_resume_finishes_the_job(ws: Workspace) -> None:
    # Given commands that survive SIGTERM (they note it and go on) and a long kill grace
    report_term = 'trap \'echo "term $MAPWISE_ITEM_ID 0 $$" >> "$M"\' TERM'
    slow = _blocking_job(ws, f"{report_term}; {block_while('SLOW')}")
    job = "twice"
    coordinator = ws.start_run(job, env={"MAPWISE_KILL_GRACE": "20"})
    coordinator.wait_for(
        lambda: len(ws.starts()) == RUNNING,
        what="three items running",
    )

    # When a first SIGINT makes the coordinator TERM the commands, which ignore it
    coordinator.send(signal.SIGINT)
    coordinator.wait_for(
        lambda: sum(1 for m in ws.markers() if m.kind == "term") >= RUNNING,
        what="the commands to get SIGTERM",
    )
    # And a second SIGINT follows during the grace period
    coordinator.send(signal.SIGINT)
    returncode = coordinator.wait()

    # Then the coordinator has exited with SIGINT's code and no command is left alive
    assert returncode == 130, coordinator.stderr
    assert f"mapwise resume {job}" in coordinator.stderr
    wait_until(lambda: not ws.live_commands(), what="the commands to be killed")

    # When the cause is gone and the job resumes
    slow.unlink()
    done = ws.resume(job)

    # Then it finishes: every item succeeded, the stopped attempts did not count
    assert done.returncode == 0, done.stderr
    db = ws.db(job)
    assert {r["item_id"]: (r["status"], r["attempts"]) for r in db.items()} == {
        i["id"]: ("succeeded", 1) for i in ITEMS
    }
    first_run = [a for a in db.attempts() if a["run_no"] == 1]
    assert len(first_run) == RUNNING
    assert {a["outcome"] for a in first_run} == {"interrupted"}
    assert ws.live_commands() == []
