"""An attempt on Dask continues where it stopped (SPEC section 9, "Continuing an attempt"):
after a ``kill -9`` of the coordinator and ``mapwise resume``, and when the worker running
it dies mid-attempt and its next run goes on another worker.

A slot's ``run`` answers early with the attempt's progress (a template step done before
the last, a session its agent names) and the coordinator records it, as the local pool's
is: so a resume goes on after the finished steps and resumes the agent's session. A run
lost with its worker is followed, within the same run of the job, by a run that goes on
from the progress the lost one sent.

The agent is the offline fake (examples/agent/fake_claude.py), run by the workers; what
happened is read from its invocation log (``helpers.continuation``: one line when a run
has its session, with its pid, one when it ends), from the lines shell steps append to a
marks file, and from the job's database, ``status`` and ``dlq show``. A worker is killed
with ``kill -9`` by pid: the parent of the victim's agent (or of its shell step). The
coordinator crash uses the session's shared cluster (no worker dies there, and every
process the crash left on the workers, all on this machine, is killed as a dead machine
would lose it); worker kills use a cluster of this module's own (``own_cluster``). Nothing
waits on time: every wait is on a condition, bounded only against hangs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cluster import OwnCluster, attempts_in_order, start_job
from helpers.continuation import (
    IDS,
    check_continued,
    check_ran_once_before_work,
    check_shown_resumed,
    check_work_resumed,
    crash,
    ends,
    fake_agent_workspace,
    is_fake_agent,
    item_steps_recorded,
    log_path,
    plan_note_work,
    start_and_reach_work,
    starts,
)
from helpers.jobs import Workspace
from helpers.processes import job_processes, parent_pid

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ON_A_WORKER = "(tcp://127.0.0.1:"  # how an attempt's host names a Dask worker
VICTIM = "victim"
# The victim's step 3 works for a long while (the fake sleeps in new sessions only: the
# continued run, resumed, ends at once); the other items' step 3 ends at once.
VICTIM_ITEMS = [
    {"id": VICTIM, "knob": "[fake:sleep=60]"},
    {"id": "a", "knob": ""},
    {"id": "b", "knob": ""},
]
VICTIM_IDS = [item["id"] for item in VICTIM_ITEMS]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace whose agent is the fake, logging to ``fake.log``; every process of
    the fake left by a failed test is killed afterwards (the workers run them here)."""
    yield from fake_agent_workspace(tmp_path, monkeypatch)


def unique_job(name: str) -> str:
    """A job id no other test session on this machine uses: a job's leftovers are found
    (and killed) machine-wide by its id (``MAPWISE_JOB_ID``), by the tests and mapwise."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def kill_worker_of(pid: int, workers: dict[str, int]) -> str:
    """``kill -9`` the worker whose process runs ``pid`` (its parent); its address."""
    worker = parent_pid(pid)
    (address,) = [a for a, worker_pid in workers.items() if worker_pid == worker]
    os.kill(worker, signal.SIGKILL)
    return address


def continued_attempt_steps(ws: Workspace, job: str, attempt_id: int) -> list[tuple[int, bool]]:
    """The template steps on record for one attempt: (step index, succeeded), in order."""
    rows = ws.db(job).rows(
        "SELECT step_index, error_kind FROM steps WHERE attempt_id = ? AND phase = 'map'"
        " AND on_failure = 0 ORDER BY step_index, id",
        (attempt_id,),
    )
    return [(row["step_index"], row["error_kind"] is None) for row in rows]


# -- kill -9 of the coordinator ------------------------------------------------------------


def test_kill9_of_the_coordinator_mid_agent_resumes_the_session_on_the_workers(
    ws: Workspace, dask_scheduler: str
) -> None:
    # Given a plan -> note -> work template on 3 items run on the Dask cluster, all three
    # running their (slow) third step on the workers, the first two steps on record
    marks = plan_note_work(ws, work="work on ${item.id} [fake:sleep=60]")
    job = unique_job("dask-crash")
    coordinator = start_and_reach_work(ws, job, "--executor", "dask", "--scheduler", dask_scheduler)

    # When the coordinator is killed with kill -9, and every process of the job the
    # workers still run with it (a machine that died)
    crash(coordinator, job)

    # Then the job is left resumable, its attempts running
    assert {a["outcome"] for a in ws.db(job).attempts()} == {"running"}

    # When the job is resumed (it remembers its executor and scheduler)
    done = ws.resume(job)

    # Then it completes on the workers; steps 1 and 2 did not run again, step 3 resumed
    # its session in the same folder with the continue prompt
    assert done.returncode == 0, done.stderr
    continued = check_continued(ws, job, marks)
    hosts = [a["host"] for a in ws.db(job).attempts() if a["outcome"] == "succeeded"]
    assert len(hosts) == len(IDS) and all(ON_A_WORKER in host for host in hosts), hosts
    # And dlq show and status show the continued step
    check_shown_resumed(ws, job, continued)
    # And nothing of the job is left running
    assert ws.live_commands() == [] and job_processes(job) == []


# -- a worker killed mid-attempt -------------------------------------------------------------


def test_a_worker_killed_mid_agent_continues_the_attempt_on_another_worker(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given plan -> note -> work on 3 items, the victim's third step slow, one attempt
    # each (a lost run counted as a failure would park the item)
    marks = plan_note_work(
        ws,
        work="work on ${item.id} ${item.knob}",
        items=VICTIM_ITEMS,
        retry={"max_attempts": 1},
    )
    job = unique_job("dask-lost-agent")
    workers = own_cluster.worker_pids()
    coordinator = start_job(ws, job, "--executor", "dask", "--scheduler", own_cluster.address)
    log = log_path(ws)
    coordinator.wait_for(
        lambda: len(starts(log, f"work on {VICTIM} ")) == 1,
        what="the victim's third step running",
    )
    coordinator.wait_for(
        lambda: item_steps_recorded(ws, job, VICTIM, 2),
        what="the victim's steps 1 and 2 on record",
    )
    (lost,) = starts(log, f"work on {VICTIM} ")

    # When the worker running the victim's agent is killed with kill -9
    killed = kill_worker_of(lost["pid"], workers)

    # Then the job completes
    done = ws.finish(coordinator)
    assert done.returncode == 0, done.stderr
    # And steps 1 and 2 ran once per item; the victim's step 3 was resumed with its
    # session, in the same folder, with the continue prompt; no other item's was
    check_ran_once_before_work(ws, marks, VICTIM_IDS)
    first, continued = check_work_resumed(ws, [VICTIM], VICTIM_IDS)
    assert first[VICTIM]["pid"] == lost["pid"]
    # And the lost run's agent was killed, never to end
    assert not is_fake_agent(lost["pid"])
    assert lost["pid"] not in {line["pid"] for line in ends(log)}

    # And the lost run is an extra interrupted attempt on the killed worker; the attempt
    # that went on succeeded on another worker, its steps each on record once, its
    # session the lost run's
    db = ws.db(job)
    assert set(db.statuses().values()) == {"succeeded"}
    victim = attempts_in_order(ws, job, VICTIM)
    assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
    assert killed in victim[0]["host"]
    assert ON_A_WORKER in victim[1]["host"] and killed not in victim[1]["host"]
    assert continued_attempt_steps(ws, job, victim[1]["id"]) == [(0, True), (1, True), (2, True)]
    assert json.loads(victim[1]["sessions"])["2"] == lost["session_id"]
    counted = db.rows("SELECT attempts FROM items WHERE item_id = ?", (VICTIM,))
    assert counted == [{"attempts": 1}]  # the interrupted execution is not counted
    for item_id in VICTIM_IDS[1:]:
        assert [a["outcome"] for a in attempts_in_order(ws, job, item_id)] == ["succeeded"]
    # And the ledger has the continued run, resumed; dlq show and status show it
    runs = db.rows(
        "SELECT r.* FROM agent_runs r JOIN items i ON i.idx = r.item_idx"
        " WHERE i.item_id = ? AND r.step_index = 2",
        (VICTIM,),
    )
    assert [(r["session_id"], r["continued"], r["subtype"]) for r in runs] == [
        (lost["session_id"], 1, "success")
    ]
    check_shown_resumed(ws, job, continued, items=len(VICTIM_IDS))
    # And nothing of the job is left running
    assert ws.live_commands() == [] and job_processes(job) == []


def test_a_worker_killed_mid_shell_step_keeps_the_first_step_and_its_capture(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given three shell steps: step 1 notes itself (with its shell's pid) and captures a
    # value unique to its run, step 2 notes itself and its worker ($PPID) and, for the
    # victim, blocks while the `slow` flag exists, step 3 notes itself and writes the
    # capture to out/<id>
    marks, out, slow = ws.path("marks"), ws.path("out"), ws.flag("slow")
    marks.touch()
    out.mkdir()
    slow.touch()
    ws.write_workflow(
        [
            {
                "shell": 'echo "s1 ${item.id} $$" >> "$MARKS"; echo "cap-${item.id}-$$"',
                "capture": "cap",
            },
            'echo "s2 ${item.id} $$ $PPID" >> "$MARKS"; [ "${item.id}" != victim ] || '
            'while [ -e "$SLOW" ]; do sleep 0.05; done',
            'echo "s3 ${item.id}" >> "$MARKS"; printf "%s\\n" "${cap}" >> "$OUT/${item.id}"',
        ],
        items=[{"id": i} for i in VICTIM_IDS],
        env={"MARKS": str(marks), "OUT": str(out), "SLOW": str(slow)},
        max_parallel=3,
        retry={"max_attempts": 1},
    )
    job = unique_job("dask-lost-shell")

    def noted(step: str, item_id: str) -> list[list[str]]:
        lines = (line.split() for line in marks.read_text().splitlines())
        return [fields[2:] for fields in lines if fields[:2] == [step, item_id]]

    workers = own_cluster.worker_pids()
    try:
        coordinator = start_job(ws, job, "--executor", "dask", "--scheduler", own_cluster.address)
        coordinator.wait_for(
            lambda: len(noted("s2", VICTIM)) == 1,
            what="the victim's step 2 running",
        )
        coordinator.wait_for(
            lambda: item_steps_recorded(ws, job, VICTIM, 1),
            what="the victim's step 1 on record",
        )
        [[shell, worker]] = noted("s2", VICTIM)

        # When the worker running the victim's step 2 is killed with kill -9, and the
        # step runs again (the flag goes once it did)
        assert parent_pid(int(shell)) == int(worker)
        killed = kill_worker_of(int(shell), workers)
        coordinator.wait_for(
            lambda: len(noted("s2", VICTIM)) == 2,
            what="the victim's step 2 running again",
        )
        slow.unlink()
        done = ws.finish(coordinator)
    finally:
        slow.unlink(missing_ok=True)

    # Then the job completes; step 1 ran once per item, step 2 twice for the victim only,
    # step 3 once per item
    assert done.returncode == 0, done.stderr
    for item_id in VICTIM_IDS:
        assert len(noted("s1", item_id)) == 1, marks.read_text()
        assert len(noted("s2", item_id)) == (2 if item_id == VICTIM else 1), marks.read_text()
        assert len(noted("s3", item_id)) == 1, marks.read_text()
    # And step 3 got the value step 1 captured in its only run, the victim's too
    for item_id in VICTIM_IDS:
        [[step1_pid]] = noted("s1", item_id)
        assert (out / item_id).read_text().splitlines() == [f"cap-{item_id}-{step1_pid}"]
    # And the lost run is an extra interrupted attempt on the killed worker; the one that
    # went on succeeded on another worker, its steps each on record once
    victim = attempts_in_order(ws, job, VICTIM)
    assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
    assert killed in victim[0]["host"]
    assert ON_A_WORKER in victim[1]["host"] and killed not in victim[1]["host"]
    assert continued_attempt_steps(ws, job, victim[1]["id"]) == [(0, True), (1, True), (2, True)]
    assert ws.live_commands() == [] and job_processes(job) == []
