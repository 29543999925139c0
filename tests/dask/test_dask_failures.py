"""What only a cluster can do to a job: an unreachable scheduler, a worker killed
mid-item, an item that kills its workers (``KilledWorker``), and a coordinator killed with
``kill -9`` then resumed on another cluster.

Tests that kill workers use a cluster of their own (``own_cluster``), never the shared
one; its scheduler gives up on a task after two lost workers (``allowed-failures: 1``).
A command's ``$PPID`` is the worker process that runs it: the commands write it in their
start marker, and the test kills that process with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _jobs import (
    WAIT_SECONDS,
    Workspace,
    block_while,
    item_command,
    live_members,
    overlapping_runs,
    wait_until,
)

from conftest import (
    announced_starts,
    attempts_in_order,
    mapwise_cli,
    run_job,
    start_job,
    start_local_cluster,
)
from mapwise.executors.dask_worker import START_TOPIC

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ITEMS = [{"id": f"i{n}"} for n in range(5)]
IN_FLIGHT = 3  # max_parallel of the coordinator-kill test
UNREACHABLE = "tcp://127.0.0.1:1"
LOST_SCHEDULER_SECONDS = 30.0  # the client gives up reconnecting after 10 s
ALLOWED_FAILURES = 1  # own_cluster: a task that lost two workers fails with KilledWorker


@dataclass(frozen=True)
class OwnCluster:
    """A two-worker LocalCluster (one thread each) that tests may kill workers of."""

    address: str
    client: Any  # distributed.Client
    scheduler: Any  # the cluster's distributed.Scheduler, in this process

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of its process, once both workers are up."""
        self.client.wait_for_workers(2, timeout=WAIT_SECONDS)
        return dict(self.client.run(os.getpid))


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[OwnCluster]:
    from distributed import Client

    cluster = start_local_cluster(
        threads_per_worker=1, scheduler_kwargs={"allowed_failures": ALLOWED_FAILURES}
    )
    client = Client(cluster.scheduler_address, set_as_default=False)
    try:
        yield OwnCluster(str(cluster.scheduler_address), client, cluster.scheduler)
    finally:
        client.close()
        cluster.close()


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def test_an_unreachable_scheduler_stops_the_job_interrupted_and_resumable(
    ws: Workspace, dask_scheduler: str
) -> None:
    # Given a job pointed at an address where no scheduler listens
    ws.write_workflow([item_command("true")], items=ITEMS[:2])

    # When it runs
    done = run_job(ws, "unreachable", "--executor", "dask", "--scheduler", UNREACHABLE)

    # Then it exits 1 with a message naming the address, and no traceback
    assert done.returncode == 1, done.stderr
    assert UNREACHABLE in done.stderr
    assert "Traceback" not in done.stderr
    assert ws.starts() == []
    # And `mapwise jobs` lists it interrupted and resumable
    (listed,) = ws.inspect("jobs", "--json").json()
    assert (listed["job_id"], listed["status"], listed["resumable"]) == (
        "unreachable",
        "interrupted",
        True,
    )
    # And it resumes later on a scheduler that answers
    resumed = mapwise_cli(ws, "resume", "unreachable", "--scheduler", dask_scheduler)
    assert resumed.returncode == 0, resumed.stderr
    assert set(ws.db("unreachable").statuses().values()) == {"succeeded"}


@dataclass(frozen=True)
class KilledWorkerRun:
    """What the worker-kill scenario saw, for the tests that check it."""

    ws: Workspace
    job: str
    returncode: int
    stderr: str
    killed_address: str
    lost_pid: int  # the killed worker's command (its process group)
    lost_pid_died: bool  # that command died before the flag let it finish


@pytest.fixture(scope="module")
def killed_worker_run(
    tmp_path_factory: pytest.TempPathFactory, own_cluster: OwnCluster
) -> Iterator[KilledWorkerRun]:
    """A job whose item ``victim`` blocks while a flag exists; the worker running it is
    killed with ``kill -9``; once the item started again, the flag goes."""
    ws = Workspace(tmp_path_factory.mktemp("killed-worker"))
    slow = ws.flag("slow")
    slow.touch()
    body = f'[ "$MAPWISE_ITEM_ID" != victim ] || {block_while("SLOW")}'
    ws.write_workflow(
        [item_command(body, extra="$PPID")],
        items=[{"id": "victim"}, {"id": "a"}, {"id": "b"}],
        env={"SLOW": str(slow)},
        max_parallel=2,
        retry={"max_attempts": 1},  # a lost execution counted as failed would park it
    )
    workers = own_cluster.worker_pids()
    try:
        coordinator = start_job(
            ws, "kill-worker", "--executor", "dask", "--scheduler", own_cluster.address
        )
        wait_until(
            lambda: ws.count("start", "victim") == 1,
            what="the victim running",
            unless=lambda: not coordinator.running(),
        )
        wait_until(
            lambda: announced_starts(own_cluster.client, "kill-worker") >= len(ws.starts()),
            what="the scheduler told of every start",
        )
        (first,) = [m for m in ws.starts() if m.name == "victim"]
        worker_pid = int(first.extra[0])
        (killed_address,) = [a for a, pid in workers.items() if pid == worker_pid]
        os.kill(worker_pid, signal.SIGKILL)
        wait_until(
            lambda: ws.count("start", "victim") == 2,
            what="the victim running again",
            unless=lambda: not coordinator.running(),
        )
        died = _dies(first.pid)
        slow.unlink()
        code = coordinator.wait()
        yield KilledWorkerRun(
            ws, "kill-worker", code, coordinator.stderr, killed_address, first.pid, died
        )
    finally:
        slow.unlink(missing_ok=True)
        ws.cleanup()


def _dies(pgid: int, seconds: float = 10.0) -> bool:
    """Whether the process group ``pgid`` is gone within ``seconds``."""
    try:
        wait_until(lambda: not live_members({pgid}), what=f"group {pgid} gone", timeout=seconds)
    except AssertionError:
        return False
    return True


def test_a_worker_killed_mid_item_costs_one_interrupted_attempt(
    killed_worker_run: KilledWorkerRun,
) -> None:
    run = killed_worker_run
    # Then the job completed with every item succeeded exactly once
    assert run.returncode == 0, run.stderr
    db = run.ws.db(run.job)
    assert db.statuses() == {"victim": "succeeded", "a": "succeeded", "b": "succeeded"}
    assert [run.ws.count("end", i) for i in ("a", "b")] == [1, 1]
    # And the lost execution is an interrupted attempt on the killed worker, not a failure
    victim = attempts_in_order(run.ws, run.job, "victim")
    assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
    assert run.killed_address in victim[0]["host"]
    counted = db.rows("SELECT attempts FROM items WHERE item_id = 'victim'")
    assert counted == [{"attempts": 1}]  # the interrupted execution is not counted


def test_a_killed_workers_command_dies_before_its_item_runs_again(
    killed_worker_run: KilledWorkerRun,
) -> None:
    # Then the command the killed worker ran is killed once the item runs again, so two
    # executions of one item never run at once
    assert killed_worker_run.lost_pid_died, f"pid {killed_worker_run.lost_pid} outlived it"
    assert overlapping_runs(killed_worker_run.ws.markers()) == []


@contextlib.contextmanager
def first_start_lost(scheduler: Any, job_id: str, attempt_id: int) -> Iterator[None]:
    """The scheduler drops the first start message of one attempt, as if its worker had
    died before sending it (a worker sends its messages in batches, every few ms)."""
    forward = scheduler.stream_handlers["log-event"]
    dropped: list[Any] = []

    def filtered(**message: Any) -> Any:
        msg = message.get("msg")
        if (
            not dropped
            and message.get("topic") == START_TOPIC
            and isinstance(msg, dict)
            and (msg.get("job_id"), msg.get("attempt_id")) == (job_id, attempt_id)
        ):
            dropped.append(msg)
            return None
        return forward(**message)

    scheduler.stream_handlers["log-event"] = filtered
    try:
        yield
    finally:
        scheduler.stream_handlers["log-event"] = forward


@pytest.mark.xfail(
    strict=True,
    reason="bug: a lost execution is only found through its worker's start message "
    "(worker.log_event, sent in batches); a worker killed before the batch left (seen "
    "in 3 of 6 runs of the CLI-cluster test when the kill followed the command's start "
    "at once) leaves no trace: no interrupted attempt, and its command is never killed, "
    "so it runs on beside the item's second run. Finding lost executions from the "
    "scheduler's side (the tasks a removed worker was processing), or confirming the "
    "start before spawning commands, would close it; if the latter, drop this test.",
)
def test_a_lost_execution_whose_start_message_was_lost_too_is_still_killed(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given a victim item that blocks while a flag exists, whose first start message the
    # scheduler never gets
    slow = ws.flag("slow")
    slow.touch()
    body = f'[ "$MAPWISE_ITEM_ID" != victim ] || {block_while("SLOW")}'
    ws.write_workflow(
        [item_command(body, extra="$PPID")],
        items=[{"id": "victim"}],
        env={"SLOW": str(slow)},
        retry={"max_attempts": 1},
    )
    own_cluster.worker_pids()
    with first_start_lost(own_cluster.scheduler, "silent", attempt_id=1):
        address = own_cluster.address
        coordinator = start_job(ws, "silent", "--executor", "dask", "--scheduler", address)
        wait_until(
            lambda: ws.count("start", "victim") == 1,
            what="the victim running",
            unless=lambda: not coordinator.running(),
        )
        (first,) = ws.starts(prefix="victim")

        # When its worker is killed mid-item and the item starts again
        os.kill(int(first.extra[0]), signal.SIGKILL)
        wait_until(
            lambda: ws.count("start", "victim") == 2,
            what="the victim running again",
            unless=lambda: not coordinator.running(),
        )

    # Then the lost execution's command is killed, and recorded as an interrupted attempt
    try:
        assert _dies(first.pid, seconds=3), f"the lost execution (group {first.pid}) still runs"
        slow.unlink()
        assert coordinator.wait() == 0, coordinator.stderr
        outcomes = [a["outcome"] for a in attempts_in_order(ws, "silent", "victim")]
        assert outcomes == ["interrupted", "succeeded"]
    finally:
        slow.unlink(missing_ok=True)


def test_an_item_that_kills_its_workers_goes_to_the_dlq_as_worker_lost(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given an item "doom" whose worker the test kills every time it starts the item
    slow = ws.flag("slow")
    slow.touch()
    body = f'[ "$MAPWISE_ITEM_ID" != doom ] || {block_while("SLOW")}'
    ws.write_workflow(
        [item_command(body, extra="$PPID")],
        items=[{"id": "doom"}, {"id": "fine"}],
        env={"SLOW": str(slow)},
        max_parallel=2,
        retry={"max_attempts": 1},
    )
    own_cluster.worker_pids()
    coordinator = start_job(ws, "doom", "--executor", "dask", "--scheduler", own_cluster.address)

    # When each start of it loses its worker, until the job ends
    killed: set[int] = set()

    def kill_new_starts() -> bool:
        for marker in ws.starts(prefix="doom"):
            if marker.pid not in killed:
                killed.add(marker.pid)
                worker = int(marker.extra[0])
                assert parent_pid(worker) == os.getpid(), "not a worker of our cluster"
                os.kill(worker, signal.SIGKILL)
        return not coordinator.running()

    wait_until(kill_new_starts, what="the job to give up on doom")
    slow.unlink()

    # Then the scheduler gave up on it (KilledWorker) and it is in the DLQ as worker_lost
    assert coordinator.wait() == 1, coordinator.stderr
    assert len(killed) == ALLOWED_FAILURES + 1
    (entry,) = ws.inspect("dlq", "list", "doom", "--json").json()
    assert (entry["item_id"], entry["error_kind"]) == ("doom", "worker_lost")
    assert "KilledWorker" in entry["last_error"]
    assert ws.db("doom").statuses() == {"doom": "dlq", "fine": "succeeded"}


def test_a_coordinator_killed_mid_run_resumes_on_another_cluster_running_each_item_once(
    ws: Workspace, dask_scheduler: str, own_cluster: OwnCluster
) -> None:
    # Given five items that block while a flag exists, three running on the shared cluster
    slow = ws.flag("slow")
    slow.touch()
    ws.write_workflow(
        [item_command(block_while("SLOW"))],
        items=ITEMS,
        env={"SLOW": str(slow)},
        max_parallel=IN_FLIGHT,
    )
    job = "kill9"
    coordinator = start_job(ws, job, "--executor", "dask", "--scheduler", dask_scheduler)
    wait_until(
        lambda: len(ws.starts()) == IN_FLIGHT,
        what="three items running",
        unless=lambda: not coordinator.running(),
    )
    leftovers = {m.pid for m in ws.starts()}

    # When the coordinator is killed with kill -9, its commands still running on the workers
    coordinator.kill9()
    assert all(live_members({pid}) for pid in leftovers)

    # And the job is resumed on another cluster
    resume = ws.start_resume(job, "--scheduler", own_cluster.address)

    # Then the dead run's commands are killed before anything runs again
    wait_until(
        lambda: not live_members(leftovers),
        what="the dead run's commands killed",
        unless=lambda: not resume.running(),
        timeout=30,
    )
    slow.unlink()
    done = ws.finish(resume)
    assert done.returncode == 0, done.stderr
    # And every item succeeded exactly once, never two runs of one item at once
    db = ws.db(job)
    assert set(db.statuses().values()) == {"succeeded"}
    outcomes = Counter(a["outcome"] for a in db.attempts())
    assert outcomes == {"succeeded": len(ITEMS), "interrupted": IN_FLIGHT}
    assert [ws.count("end", item["id"]) for item in ITEMS] == [1] * len(ITEMS)
    assert overlapping_runs(ws.markers()) == []
    # And no command of the job is left alive
    assert ws.live_commands() == []


def test_a_scheduler_lost_mid_run_stops_the_job_interrupted_and_resume_finishes_it(
    ws: Workspace, dask_scheduler: str
) -> None:
    # Given two items that block while a flag exists, both running on a cluster of their own
    slow = ws.flag("slow")
    slow.touch()
    items = ITEMS[:2]
    ws.write_workflow(
        [item_command(block_while("SLOW"))],
        items=items,
        env={"SLOW": str(slow)},
        max_parallel=len(items),
    )
    cluster = start_local_cluster(n_workers=1)
    address = str(cluster.scheduler_address)
    try:
        coordinator = start_job(ws, "lost", "--executor", "dask", "--scheduler", address)
        wait_until(
            lambda: len(ws.starts()) == len(items),
            what="both items running",
            unless=lambda: not coordinator.running(),
        )
    finally:
        # When the cluster goes away under the job (or the test failed before)
        cluster.close()

    # Then the job stops as interrupted (exit 1) with a message naming the scheduler
    try:
        code = coordinator.wait(timeout=LOST_SCHEDULER_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the coordinator still runs {LOST_SCHEDULER_SECONDS}s after the loss")
    assert code == 1, coordinator.stderr
    assert address in coordinator.stderr
    assert "Traceback" not in coordinator.stderr
    db = ws.db("lost")
    assert db.job()["status"] == "interrupted"
    assert db.statuses() == dict.fromkeys((i["id"] for i in items), "pending")
    assert {a["outcome"] for a in db.attempts()} == {"interrupted"}

    # And a resume on another cluster finishes every item exactly once
    slow.unlink()
    resumed = mapwise_cli(ws, "resume", "lost", "--scheduler", dask_scheduler)
    assert resumed.returncode == 0, resumed.stderr
    assert set(db.statuses().values()) == {"succeeded"}
    assert [ws.count("end", i["id"]) for i in items] == [1] * len(items)
    assert ws.live_commands() == []
