"""``mapwise resume`` as a user meets it: locks, finished jobs, edited workflows and
inputs, the DLQ, a failed reduce, the error policy, and a lower parallelism.

Jobs that only need to stop somewhere deterministic are started through the library in
this process (an item that fails, a reduce step that fails); every resume, and every job
that must be signalled, runs as a real ``python -m mapwise`` subprocess.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers.jobs import (
    NOTE_PID,
    Coordinator,
    Workspace,
    block_while,
    item_command,
    step_end,
    step_start,
    workspace,
)
from mapwise.cli.exit_codes import exit_code_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ITEMS = [{"id": f"i{n}", "n": n} for n in range(6)]
IDS = [item["id"] for item in ITEMS]
FLAKY = "i2"  # the item that fails until the `fixed` flag file exists
FAILS_UNTIL_FIXED = f'[ "$MAPWISE_ITEM_ID" != {FLAKY} ] || [ -e "$FIXED" ]'


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def _flaky_job(
    ws: Workspace,
    *,
    extra: str = "v1",
    reduce: Sequence[str] = (),
    error_policy: Mapping[str, Any] | None = None,
    **map_options: Any,
) -> Path:
    """Six items run one at a time; item i2 fails until the `fixed` flag exists."""
    fixed = ws.flag("fixed")
    ws.write_workflow(
        [item_command(FAILS_UNTIL_FIXED, extra)],
        items=ITEMS,
        env={"FIXED": str(fixed)},
        reduce=reduce,
        error_policy=error_policy,
        max_parallel=1,
        **map_options,
    )
    return fixed


def _stopped_by_policy(ws: Workspace, job: str, *, extra: str = "v1") -> Path:
    """A job the error policy stopped at i2: i0, i1 succeeded, i3..i5 never started."""
    fixed = _flaky_job(ws, extra=extra, error_policy={"on_item_failure": "stop"})
    result = ws.run_library(job)
    assert (result.status.value, exit_code_for(result.outcome)) == ("failed", 1)
    return fixed


def _start_counts(ws: Workspace, since: int = 0) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in ws.starts(since):
        counts[marker.name] = counts.get(marker.name, 0) + 1
    return counts


def _blocking_items(ws: Workspace, count: int, parallel: int, body: str = "") -> Path:
    """Items that block while the `block` flag exists; returns the flag (created)."""
    block = ws.flag("block")
    block.touch()
    ws.write_workflow(
        [item_command(f"{body}{block_while('BLOCK')}")],
        items=[{"id": f"i{n}"} for n in range(count)],
        env={"BLOCK": str(block)},
        max_parallel=parallel,
    )
    return block


def _wait_for_starts(ws: Workspace, count: int, coordinator: Coordinator, since: int = 0) -> None:
    coordinator.wait_for(
        lambda: len(ws.starts(since)) >= count,
        what=f"{count} items running",
    )


# -- locks -----------------------------------------------------------------------------


def test_a_job_held_by_a_live_process_is_refused_with_exit_3_naming_the_holder(
    ws: Workspace,
) -> None:
    # Given a running job (its items block while a flag file exists)
    block = _blocking_items(ws, count=3, parallel=3)
    job = "held"
    holder = ws.start_run(job)
    _wait_for_starts(ws, 3, holder)

    # When it is resumed while the first run holds it
    refused = ws.resume(job)

    # Then the resume exits 3 and names the holder's pid
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.splitlines()[0] == f"job {job}"
    assert f"pid {holder.pid}" in refused.stderr

    # Given the job interrupted, then resumed, and that resume running its items
    holder.send(signal.SIGINT)
    assert holder.wait() == 130, holder.stderr
    since = ws.marker_offset()
    first = ws.start_resume(job)
    _wait_for_starts(ws, 3, first, since)

    # When a second resume starts while the first runs
    second = ws.resume(job)

    # Then the second exits 3 and names the first one's pid
    assert second.returncode == 3, second.stderr
    assert f"pid {first.pid}" in second.stderr
    # And the first finishes the job once the items may end, each item run once more
    block.unlink()
    assert first.wait() == 0, first.stderr
    assert _start_counts(ws, since) == {f"i{n}": 1 for n in range(3)}
    assert set(ws.db(job).statuses().values()) == {"succeeded"}


def test_a_refused_runner_never_names_a_dead_previous_holder(ws: Workspace) -> None:
    # Given a job whose last run has ended (its lock file still names that run's pid)
    _flaky_job(ws, error_policy={"on_item_failure": "stop"})
    job = "stale-holder"
    previous = ws.start_run(job)
    assert previous.wait() == 1, previous.stderr
    assert f'"pid": {previous.pid}' in (ws.state_dir / "jobs" / job / "lock").read_text()
    # And a new runner (this process) that has just taken the lock, and not yet written
    # who it is: the instant in which a second runner was seen to read the stale record
    fd = os.open(ws.state_dir / "jobs" / job / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

        # When the job is resumed
        refused = ws.resume(job)
    finally:
        os.close(fd)

    # Then it is refused with exit 3, and not in the name of the dead previous runner
    assert refused.returncode == 3, refused.stderr
    assert f"pid {previous.pid} " not in refused.stderr


def test_run_with_the_id_of_a_job_held_by_another_process_exits_3(ws: Workspace) -> None:
    # Given a running job
    block = _blocking_items(ws, count=2, parallel=2)
    job = "held-run"
    holder = ws.start_run(job)
    _wait_for_starts(ws, 2, holder)

    # When `run` is started again with the same job id
    second = ws.finish(ws.start_run(job))
    block.unlink()
    assert holder.wait() == 0, holder.stderr

    # Then it is refused with exit 3 and the holder's pid
    assert second.returncode == 3, second.stderr
    assert f"pid {holder.pid}" in second.stderr


# -- finished jobs ---------------------------------------------------------------------


def test_resuming_a_completed_job_with_an_empty_dlq_does_nothing(ws: Workspace) -> None:
    # Given a job that completed with every item succeeded
    fixed = _flaky_job(ws, reduce=[f"{NOTE_PID}; {step_start('reduce-0')}"])
    fixed.touch()
    job = "complete"
    result = ws.run_library(job)
    assert exit_code_for(result.outcome) == 0
    since = ws.marker_offset()

    # When it is resumed
    done = ws.resume(job)

    # Then it exits 0, says there is nothing to resume, and runs nothing
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == f"job {job}"
    assert "nothing to resume" in done.stderr
    assert ws.markers(since) == []
    assert len(ws.db(job).runs()) == 1


# -- an edited workflow or input -------------------------------------------------------


def _edit_workflow(ws: Workspace) -> None:
    """The template now writes `v2`; a filter that would drop i4 and i5 is added."""
    spec = json.loads(ws.workflow_path.read_text())
    spec["map"]["agent_template"] = [{"shell": item_command(FAILS_UNTIL_FIXED, "v2")}]
    spec["map"]["filter"] = "n < 4"
    ws.workflow_path.write_text(json.dumps(spec, indent=2))


@pytest.mark.parametrize(
    ("choice", "template"), [("--keep-workflow", "v1"), ("--reload-workflow", "v2")]
)
def test_an_edited_workflow_needs_a_choice_and_the_items_stay_frozen(
    ws: Workspace, choice: str, template: str
) -> None:
    # Given a job stopped after i0, i1 succeeded and i2 failed; i3..i5 still to run
    job = "edited"
    _stopped_by_policy(ws, job)
    frozen = ws.db(job).items(decode=False)
    # And its workflow file edited since (another template, a filter)
    _edit_workflow(ws)
    since = ws.marker_offset()

    # When it is resumed without saying which workflow to use
    refused = ws.resume(job)

    # Then it is refused with exit 2, naming both choices, and nothing runs
    assert refused.returncode == 2, refused.stderr
    assert "--reload-workflow" in refused.stderr
    assert "--keep-workflow" in refused.stderr
    assert ws.markers(since) == []

    # When it is resumed with a choice
    done = ws.resume(job, choice)

    # Then the remaining items, and only they, run with the chosen template
    assert done.returncode == 1, done.stderr  # i2 is still in the DLQ
    starts = ws.starts(since)
    assert sorted(m.name for m in starts) == ["i3", "i4", "i5"]
    assert {m.extra for m in starts} == {(template,)}
    # And the items stay frozen although the edited filter would drop i4 and i5
    assert [(r["item_id"], r["data"]) for r in ws.db(job).items(decode=False)] == [
        (r["item_id"], r["data"]) for r in frozen
    ]
    assert ws.db(job).statuses() == {**dict.fromkeys(IDS, "succeeded"), FLAKY: "dlq"}


def test_an_edited_input_is_reported_and_the_frozen_items_are_kept(ws: Workspace) -> None:
    # Given a job stopped at i2 by the error policy
    job = "input-edited"
    fixed = _stopped_by_policy(ws, job)
    frozen = ws.db(job).items(decode=False)
    # And its input edited since: an item dropped, one changed, two added
    ws.write_items([*ITEMS[:4], {"id": "i4", "n": 40}, {"id": "x1"}, {"id": "x2"}])
    fixed.touch()
    since = ws.marker_offset()

    # When it is resumed
    done = ws.resume(job, "--retry-failed")

    # Then it says the input changed and keeps the frozen items
    assert done.returncode == 0, done.stderr
    notice = [line for line in done.stderr.splitlines() if "items.json" in line]
    assert notice and "changed" in notice[0], done.stderr
    assert [(r["item_id"], r["data"]) for r in ws.db(job).items(decode=False)] == [
        (r["item_id"], r["data"]) for r in frozen
    ]
    assert sorted(_start_counts(ws, since)) == ["i2", "i3", "i4", "i5"]
    assert ws.db(job).statuses() == dict.fromkeys(IDS, "succeeded")


# -- the DLQ, a failed reduce, the error policy ----------------------------------------


def test_a_dlq_item_is_retried_after_its_cause_is_fixed_and_reduce_sees_the_new_counts(
    ws: Workspace,
) -> None:
    # Given a job that completed with i2 in the DLQ after two attempts
    counts = "${map.successful} ${map.failed}"
    reduce = [f"{NOTE_PID}; {step_start('reduce-0', counts)}"]
    fixed = _flaky_job(ws, reduce=reduce, retry={"max_attempts": 2, "initial_delay": 0})
    job = "dlq"
    result = ws.run_library(job)
    assert (exit_code_for(result.outcome), result.dlq) == (1, 1)
    db = ws.db(job)
    assert (db.statuses()[FLAKY], db.rows("SELECT attempts FROM items WHERE item_id = 'i2'")) == (
        "dlq",
        [{"attempts": 2}],
    )
    since = ws.marker_offset()

    # When the cause is fixed and the job resumed with --retry-failed
    fixed.touch()
    done = ws.resume(job, "--retry-failed")

    # Then the item succeeds, nothing else reruns, and reduce reruns with the new counts
    assert done.returncode == 0, done.stderr
    assert db.statuses() == dict.fromkeys(IDS, "succeeded")
    assert _start_counts(ws, since) == {FLAKY: 1, "reduce-0": 1}
    reduce_runs = [m.extra for m in ws.starts() if m.name == "reduce-0"]
    assert reduce_runs == [("5", "1"), ("6", "0")]


def test_a_failed_reduce_resumes_from_its_failed_step_without_rerunning_the_map(
    ws: Workspace,
) -> None:
    # Given a job whose map succeeded and whose second reduce step failed
    reduce = [
        f"{NOTE_PID}; {step_start(f'reduce-{k}')}; {cond} && {step_end(f'reduce-{k}')}"
        for k, cond in enumerate(["true", '[ -e "$FIXED" ]', "true"])
    ]
    fixed = ws.flag("fixed")
    ws.write_workflow(
        [item_command("true")],
        items=ITEMS,
        env={"FIXED": str(fixed)},
        reduce=reduce,
        max_parallel=2,
    )
    job = "reduce-failed"
    result = ws.run_library(job)
    assert (result.status.value, exit_code_for(result.outcome)) == ("failed", 1)
    db = ws.db(job)
    assert db.job()["phase"] == "reduce"
    assert db.statuses() == dict.fromkeys(IDS, "succeeded")
    assert _start_counts(ws) == {**dict.fromkeys(IDS, 1), "reduce-0": 1, "reduce-1": 1}
    since = ws.marker_offset()

    # When the cause is fixed and the job resumed
    fixed.touch()
    done = ws.resume(job)

    # Then reduce runs again from its failed step; no item and no earlier step reruns
    assert done.returncode == 0, done.stderr
    assert _start_counts(ws, since) == {"reduce-1": 1, "reduce-2": 1}
    assert ws.db(job).job()["status"] == "completed"


def test_a_job_stopped_by_the_error_policy_resumes_its_remaining_items(ws: Workspace) -> None:
    # Given a job the error policy stopped when i2 failed
    job = "policy"
    fixed = _stopped_by_policy(ws, job)
    db = ws.db(job)
    assert db.job()["status"] == "failed"
    assert db.statuses() == {
        "i0": "succeeded",
        "i1": "succeeded",
        "i2": "dlq",
        "i3": "pending",
        "i4": "pending",
        "i5": "pending",
    }
    assert sorted(_start_counts(ws)) == ["i0", "i1", "i2"]
    fixed.touch()
    since = ws.marker_offset()

    # When it is resumed after the cause is fixed
    done = ws.resume(job)

    # Then the remaining items run, and the failed one stays in the DLQ
    assert done.returncode == 1, done.stderr
    assert "items.json" not in done.stderr  # the input did not change: no notice
    assert _start_counts(ws, since) == {"i3": 1, "i4": 1, "i5": 1}
    assert db.statuses() == {**dict.fromkeys(IDS, "succeeded"), FLAKY: "dlq"}
    since = ws.marker_offset()

    # When it is resumed with --retry-failed
    done = ws.resume(job, "--retry-failed")

    # Then the failed item runs too, and only it
    assert done.returncode == 0, done.stderr
    assert _start_counts(ws, since) == {FLAKY: 1}
    assert db.statuses() == dict.fromkeys(IDS, "succeeded")


# -- parallelism -----------------------------------------------------------------------


def test_resume_with_max_parallel_2_runs_at_most_two_items_at_once(ws: Workspace) -> None:
    # Given a job on 4 slots whose items note how many items run at once
    running, counts = ws.path("running"), ws.path("counts")
    running.mkdir()
    ws.write_workflow(
        [
            item_command(
                ': > "$R/$MAPWISE_ITEM_ID"; ls "$R" | wc -l >> "$C"; '
                f"{block_while('BLOCK')}; sleep 0.2; "
                'rm -f "$R/$MAPWISE_ITEM_ID"'
            )
        ],
        items=[{"id": f"i{n}"} for n in range(8)],
        env={"R": str(running), "C": str(counts), "BLOCK": str(ws.flag("block"))},
        max_parallel=4,
    )
    ws.flag("block").touch()
    # And it was interrupted with four items running
    job = "narrow"
    coordinator = ws.start_run(job)
    _wait_for_starts(ws, 4, coordinator)
    coordinator.send(signal.SIGINT)
    assert coordinator.wait() == 130, coordinator.stderr
    assert max(int(line) for line in counts.read_text().split()) == 4
    for leftover in running.iterdir():  # the interrupted commands could not clean up
        leftover.unlink()
    counts.write_text("")
    ws.flag("block").unlink()

    # When it is resumed with --max-parallel 2
    done = ws.resume(job, "--max-parallel", "2")

    # Then every item ran, never more than two at once
    assert done.returncode == 0, done.stderr
    seen = [int(line) for line in counts.read_text().split()]
    assert len(seen) == 8
    assert max(seen) == 2
    assert set(ws.db(job).statuses().values()) == {"succeeded"}
