"""The behaviours every executor shares, run on the local pool and on Dask, and the ways
of choosing the executor (command line, workflow key, library).

Jobs run through the real command line (``python -m mapwise run ... --executor dask
--scheduler ADDR``) in subprocesses, one through the library; the Dask ones on the
session's LocalCluster. What happened is read from the marker lines the commands wrote,
the pids they noted, and the job's database.
"""

from __future__ import annotations

import json
import signal
import sys

import pytest

import mapwise
from helpers.cluster import ExecutorChoice, assert_ran_on, run_job, start_job
from helpers.jobs import Workspace, block_while, item_command
from helpers.processes import pid_alive
from mapwise.cli.exit_codes import exit_code_for
from mapwise.domain.states import JobStatus
from mapwise.errors import UserError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

SLEEP = 0.3
ITEMS = [{"id": f"i{n}"} for n in range(5)]
IN_FLIGHT = 3  # max_parallel of the stop-and-resume test


# -- what every executor does -----------------------------------------------------------


def test_a_small_job_runs_every_item_once_with_real_durations(
    ws: Workspace, executor: ExecutorChoice
) -> None:
    # Given five items whose command sleeps 0.3 s and leaves a file named after its item
    out = ws.path("out")
    out.mkdir()
    body = f'sleep {SLEEP}; echo "$$" > "$OUT/$MAPWISE_ITEM_ID"'
    ws.write_workflow([item_command(body)], items=ITEMS, env={"OUT": str(out)}, max_parallel=3)

    # When it runs
    done = run_job(ws, f"small-{executor.kind}", *executor.args)

    # Then every item ran exactly once and succeeded
    assert done.returncode == 0, done.stderr
    ids = [item["id"] for item in ITEMS]
    assert sorted(p.name for p in out.iterdir()) == ids
    assert [ws.count("end", i) for i in ids] == [1] * len(ids)
    db = ws.db(f"small-{executor.kind}")
    assert db.statuses() == dict.fromkeys(ids, "succeeded")
    attempts = db.attempts()
    assert [(a["item_id"], a["outcome"]) for a in attempts] == [(i, "succeeded") for i in ids]
    # And each attempt and step lasted at least the real sleep, on the chosen executor
    assert all(a["duration"] >= SLEEP for a in attempts)
    assert all(s["duration"] >= SLEEP for s in db.rows("SELECT * FROM steps WHERE phase='map'"))
    assert_ran_on(executor, [a["host"] for a in attempts])


def test_retries_then_the_dlq_and_reduce_sees_the_counts(
    ws: Workspace, executor: ExecutorChoice
) -> None:
    # Given an item that always exits 3, two that succeed, two attempts each, and a reduce
    items = [{"id": "good1"}, {"id": "bad"}, {"id": "good2"}]
    body = '[ "$MAPWISE_ITEM_ID" != bad ] || exit 3'
    reduce = 'echo "${map.successful}/${map.total} failed ${map.failed}" > reduce.txt'
    ws.write_workflow(
        [item_command(body)],
        items=items,
        reduce=[reduce],
        retry={"max_attempts": 2, "initial_delay": 0.1},
    )
    job = f"dlq-{executor.kind}"

    # When it runs
    done = run_job(ws, job, *executor.args)

    # Then it ends with the failing item in the DLQ after two attempts (exit 1)
    assert done.returncode == 1, done.stderr
    assert ws.count("start", "bad") == 2
    dlq = ws.inspect("dlq", "list", job, "--json").json()
    assert [(e["item_id"], e["attempts"], e["error_kind"], e["exit_code"]) for e in dlq] == [
        ("bad", 2, "exit_code", 3)
    ]
    assert ws.db(job).statuses() == {"good1": "succeeded", "bad": "dlq", "good2": "succeeded"}
    # And reduce saw the counts
    assert ws.path("reduce.txt").read_text().split() == ["2/3", "failed", "1"]


def test_a_timeout_kills_the_command_and_its_grandchild(
    ws: Workspace, executor: ExecutorChoice
) -> None:
    # Given a step that starts a background sleep (a grandchild), under a 0.5 s timeout
    grandchild = ws.path("grandchild")
    step = {"shell": f'sleep 30 & echo $! > "{grandchild}"; wait', "timeout": 0.5}
    ws.write_workflow([step], items=ITEMS[:1], retry={"max_attempts": 1})
    job = f"timeout-{executor.kind}"

    # When it runs
    done = run_job(ws, job, *executor.args)

    # Then the attempt timed out after at least the timeout, and the grandchild is dead
    assert done.returncode == 1, done.stderr
    (attempt,) = ws.db(job).attempts()
    assert (attempt["outcome"], attempt["error_kind"]) == ("failed", "timeout")
    assert attempt["duration"] >= 0.5
    assert not pid_alive(int(grandchild.read_text()))


def test_sigint_stops_the_job_and_resume_finishes_it(
    ws: Workspace, executor: ExecutorChoice
) -> None:
    # Given five items that block while a flag exists, three of them running
    slow = ws.flag("slow")
    slow.touch()
    ws.write_workflow(
        [item_command(block_while("SLOW"))],
        items=ITEMS,
        env={"SLOW": str(slow)},
        max_parallel=IN_FLIGHT,
    )
    job = f"sigint-{executor.kind}"
    coordinator = start_job(ws, job, *executor.args)
    coordinator.wait_for(
        lambda: len(ws.starts()) == IN_FLIGHT,
        what="three items running",
    )

    # When the coordinator gets SIGINT
    coordinator.send(signal.SIGINT)

    # Then it exits 130, the running commands are dead, their attempts interrupted
    assert coordinator.wait() == 130, coordinator.stderr
    assert ws.live_commands() == []
    db = ws.db(job)
    assert [a["outcome"] for a in db.attempts()] == ["interrupted"] * IN_FLIGHT
    assert db.job()["status"] == "interrupted"

    # And a resume (on the executor the job used) finishes every item exactly once
    slow.unlink()
    resumed = ws.resume(job)
    assert resumed.returncode == 0, resumed.stderr
    assert set(db.statuses().values()) == {"succeeded"}
    assert [ws.count("end", item["id"]) for item in ITEMS] == [1] * len(ITEMS)
    assert_ran_on(executor, [a["host"] for a in db.attempts() if a["outcome"] == "succeeded"])


# -- choosing the executor ---------------------------------------------------------------


def test_the_workflow_executor_key_runs_on_dask_and_the_command_line_overrides_it(
    ws: Workspace, dask_scheduler: str
) -> None:
    # Given a workflow whose executor key names the cluster
    ws.write_workflow([item_command("true")], items=ITEMS[:2])
    spec = json.loads(ws.workflow_path.read_text())
    spec["executor"] = {"kind": "dask", "scheduler": dask_scheduler}
    ws.workflow_path.write_text(json.dumps(spec))

    # When it runs without options, then with --executor local
    on_key = run_job(ws, "by-key")
    overridden = run_job(ws, "by-flag", "--executor", "local")

    # Then the first ran on the workers, the second on the local pool
    assert (on_key.returncode, overridden.returncode) == (0, 0), on_key.stderr
    assert_ran_on(ExecutorChoice("dask"), [a["host"] for a in ws.db("by-key").attempts()])
    assert_ran_on(ExecutorChoice("local"), [a["host"] for a in ws.db("by-flag").attempts()])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--executor", "dask"), "--scheduler"),
        (("--executor", "local", "--scheduler", "tcp://127.0.0.1:8786"), "--executor dask"),
    ],
    ids=["dask-without-scheduler", "scheduler-without-dask"],
)
def test_a_scheduler_must_go_with_the_dask_executor(
    ws: Workspace, args: tuple[str, ...], expected: str
) -> None:
    # Given a workflow without an executor key
    ws.write_workflow([item_command("true")], items=ITEMS[:1])

    # When it is run with an incomplete or contradictory executor choice
    done = ws.inspect("run", str(ws.workflow_path), "--job-id", "bad-choice", *args)

    # Then it is a usage error with a clear message, and no job was made
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (ws.state_dir / "jobs" / "bad-choice").exists()


def test_the_library_runs_a_job_on_the_chosen_executor(
    ws: Workspace, executor: ExecutorChoice
) -> None:
    # Given a small workflow
    ws.write_workflow([item_command(f"sleep {SLEEP}")], items=ITEMS[:3])

    # When it runs through the library
    result = mapwise.run_workflow(
        ws.workflow_path,
        state_dir=ws.state_dir,
        job_id="api",
        install_signal_handlers=False,
        **executor.kwargs,
    )

    # Then it completed, every attempt on the chosen executor and as long as the sleep
    assert (result.status, result.succeeded, exit_code_for(result.outcome)) == (
        JobStatus.COMPLETED,
        3,
        0,
    )
    attempts = ws.db("api").attempts()
    assert_ran_on(executor, [a["host"] for a in attempts])
    assert all(a["duration"] >= SLEEP for a in attempts)


def test_the_library_refuses_dask_without_a_scheduler(ws: Workspace) -> None:
    # Given a workflow without an executor key
    ws.write_workflow([item_command("true")], items=ITEMS[:1])

    # When the library is asked for Dask without an address, then it is a user error
    with pytest.raises(UserError) as refused:
        mapwise.run_workflow(
            ws.workflow_path,
            state_dir=ws.state_dir,
            job_id="api",
            executor="dask",
            install_signal_handlers=False,
        )
    assert refused.value.exit_code == 2
    assert "scheduler" in str(refused.value)
    assert ws.starts() == []
