"""What only a cluster can do to a job: an unreachable scheduler, a worker killed
mid-item, a worker without mapwise, an item that kills its workers (``KilledWorker``), and
a coordinator killed with ``kill -9`` then resumed on another cluster.

Tests that kill workers use a cluster of their own (``own_cluster``, in conftest.py),
never the shared one; its scheduler gives up on an attempt after two lost workers
(``allowed-failures: 1``, which mapwise reads from the scheduler), and it has three
workers, so that one still runs on this machine when a task killed two: the lost runs'
commands can only be killed through a worker on their machine.
A command's ``$PPID`` is the worker process that runs it: the commands write it in their
start marker, and the test kills that process with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from helpers.cluster import (
    ALLOWED_FAILURES,
    OwnCluster,
    attempts_in_order,
    mapwise_cli,
    run_job,
    start_job,
    start_local_cluster,
)
from helpers.jobs import (
    Coordinator,
    Marker,
    Workspace,
    block_while,
    item_command,
    overlapping_runs,
    wait_until,
)
from helpers.processes import live_members, parent_pid

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

ITEMS = [{"id": f"i{n}"} for n in range(5)]
IN_FLIGHT = 3  # max_parallel of the coordinator-kill test
UNREACHABLE = "tcp://127.0.0.1:1"
LOST_SCHEDULER_SECONDS = 30.0  # the client gives up reconnecting after 10 s


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
    killed with ``kill -9`` as soon as the command started; once the item started again,
    the flag goes at once."""
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
        coordinator.wait_for(
            lambda: ws.count("start", "victim") == 1,
            what="the victim running",
        )
        first, killed_address = _kill_the_victims_worker(ws, coordinator, workers)
        # the flag goes at once: a first run still alive now would end, marker and all
        slow.unlink()
        died = _dies(first.pid)
        code = coordinator.wait()
        yield KilledWorkerRun(
            ws, "kill-worker", code, coordinator.stderr, killed_address, first.pid, died
        )
    finally:
        slow.unlink(missing_ok=True)
        ws.cleanup()


def _kill_the_victims_worker(
    ws: Workspace, coordinator: Coordinator, workers: dict[str, int]
) -> tuple[Marker, str]:
    """Kill the worker running the item ``victim`` (``SIGKILL`` by pid) and wait until the
    item starts again; its first start and the killed worker's address."""
    (first,) = ws.starts(prefix="victim")
    worker_pid = int(first.extra[0])
    (killed,) = [address for address, pid in workers.items() if pid == worker_pid]
    os.kill(worker_pid, signal.SIGKILL)
    coordinator.wait_for(
        lambda: ws.count("start", "victim") == 2,
        what="the victim running again",
    )
    return first, killed


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
    # Then the command the killed worker ran was killed before the item ran again (it never
    # ended, though the flag went as soon as the second run started), so two executions of
    # one item never run at once
    assert killed_worker_run.lost_pid_died, f"pid {killed_worker_run.lost_pid} outlived it"
    assert overlapping_runs(killed_worker_run.ws.markers()) == []
    assert killed_worker_run.ws.count("end", "victim") == 1


@contextlib.contextmanager
def worker_batches_lost(scheduler: Any, silent: set[str]) -> Iterator[None]:
    """The scheduler drops every message the workers ``silent`` send in their batches
    (every few ms), as if each died before its batch left; the requests a worker waits
    on, the clients' messages and those of other workers get through."""
    handlers = dict(scheduler.stream_handlers)

    def dropping(forward: Any) -> Any:
        if inspect.iscoroutinefunction(forward):

            async def dropping_async(**message: Any) -> None:
                if message.get("worker") not in silent:
                    await forward(**message)

            return dropping_async

        def dropping_sync(**message: Any) -> None:
            if message.get("worker") not in silent:
                forward(**message)

        return dropping_sync

    scheduler.stream_handlers.update({op: dropping(f) for op, f in handlers.items()})
    try:
        yield
    finally:
        scheduler.stream_handlers.update(handlers)


def test_a_worker_killed_before_its_messages_left_still_has_its_lost_run_killed_and_recorded(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given a victim item that blocks while a flag exists, running on a slot
    slow = ws.flag("slow")
    slow.touch()
    body = f'[ "$MAPWISE_ITEM_ID" != victim ] || {block_while("SLOW")}'
    ws.write_workflow(
        [item_command(body, extra="$PPID")],
        items=[{"id": "victim"}],
        env={"SLOW": str(slow)},
        retry={"max_attempts": 1},
    )
    workers = own_cluster.worker_pids()
    try:
        address = own_cluster.address
        coordinator = start_job(ws, "silent", "--executor", "dask", "--scheduler", address)
        coordinator.wait_for(
            lambda: ws.count("start", "victim") == 1,
            what="the victim running",
        )
        # When none of the victim's worker's batched messages reach the scheduler any more
        # (a worker killed at once loses its last batch), and that worker is killed
        # mid-item, and the item starts again
        (running,) = ws.starts(prefix="victim")
        victims = {a for a, pid in workers.items() if pid == int(running.extra[0])}
        with worker_batches_lost(own_cluster.scheduler, victims):
            first, killed = _kill_the_victims_worker(ws, coordinator, workers)

        # Then the lost run's command was killed before the second run started: the flag
        # goes at once, and it never ends
        slow.unlink()
        assert _dies(first.pid), f"the lost execution (group {first.pid}) still runs"
        assert coordinator.wait() == 0, coordinator.stderr
        assert ws.count("end", "victim") == 1
        assert overlapping_runs(ws.markers()) == []
        # And it is recorded as an interrupted attempt on the killed worker
        victim = attempts_in_order(ws, "silent", "victim")
        assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
        assert killed in victim[0]["host"]
    finally:
        slow.unlink(missing_ok=True)


def test_a_worker_without_mapwise_stops_the_job_resumable_before_any_command(
    ws: Workspace, dask_scheduler: str
) -> None:
    # Given a cluster whose worker cannot import mapwise (as if it were not installed there)
    ws.write_workflow([item_command("true")], items=ITEMS[:2])
    cluster = start_local_cluster(n_workers=1, threads_per_worker=1)
    try:
        from distributed import Client

        with Client(cluster.scheduler_address, set_as_default=False) as client:
            client.run(exec, "import sys; sys.modules['mapwise.executors.dask_worker'] = None", {})

        # When a job runs there
        address = str(cluster.scheduler_address)
        done = run_job(ws, "nowhere", "--executor", "dask", "--scheduler", address)
    finally:
        cluster.close()

    # Then it exits 1 before any command, saying which worker lacks mapwise
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "mapwise cannot be imported on Dask workers" in done.stderr
    assert "tcp://127.0.0.1:" in done.stderr
    assert ws.starts() == []
    # And `mapwise jobs` lists it interrupted and resumable, and it resumes elsewhere
    (listed,) = ws.inspect("jobs", "--json").json()
    assert (listed["status"], listed["resumable"]) == ("interrupted", True)
    resumed = mapwise_cli(ws, "resume", "nowhere", "--scheduler", dask_scheduler)
    assert resumed.returncode == 0, resumed.stderr
    assert set(ws.db("nowhere").statuses().values()) == {"succeeded"}


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

    try:
        wait_until(kill_new_starts, what="the job to give up on doom")

        # Then the scheduler gave up on it (KilledWorker) and it is in the DLQ as worker_lost
        assert coordinator.wait() == 1, coordinator.stderr
        assert len(killed) == ALLOWED_FAILURES + 1
        (entry,) = ws.inspect("dlq", "list", "doom", "--json").json()
        assert (entry["item_id"], entry["error_kind"]) == ("doom", "worker_lost")
        assert "KilledWorker" in entry["last_error"]
        assert ws.db("doom").statuses() == {"doom": "dlq", "fine": "succeeded"}
        # And no run of it goes on once it failed, though the flag still holds them (a retry
        # or `dlq retry` would run beside one): the last run's command was killed too
        leftovers = [m.pid for m in ws.starts(prefix="doom") if not _dies(m.pid)]
        assert leftovers == [], "runs of doom outlived the job"
        assert ws.count("end", "doom") == 0
        # And the runs before the last are interrupted attempts, the last one the failure
        doom = attempts_in_order(ws, "doom", "doom")
        assert [a["outcome"] for a in doom] == ["interrupted", "failed"]
        assert all("(tcp://127.0.0.1:" in a["host"] for a in doom)
    finally:
        slow.unlink(missing_ok=True)


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
    coordinator.wait_for(
        lambda: len(ws.starts()) == IN_FLIGHT,
        what="three items running",
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
        coordinator.wait_for(
            lambda: len(ws.starts()) == len(items),
            what="both items running",
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


def test_a_worker_killed_while_its_batch_runs_costs_only_its_own_attempt(
    ws: Workspace, own_cluster: OwnCluster
) -> None:
    # Given three items that block while a flag exists, all claimed at once and so sent to
    # the scheduler in one batch, each running on a worker of its own
    slow = ws.flag("slow")
    slow.touch()
    items = [{"id": "victim"}, {"id": "a"}, {"id": "b"}]
    ws.write_workflow(
        [item_command(block_while("SLOW"), extra="$PPID")],
        items=items,
        env={"SLOW": str(slow)},
        max_parallel=len(items),
        retry={"max_attempts": 1},  # a lost execution counted as failed would park it
    )
    workers = own_cluster.worker_pids()
    try:
        address = own_cluster.address
        coordinator = start_job(ws, "batch", "--executor", "dask", "--scheduler", address)
        coordinator.wait_for(
            lambda: len(ws.starts()) == len(items),
            what="the whole batch running",
        )
        # When the victim's worker is killed mid-item, and the victim starts again
        first, killed = _kill_the_victims_worker(ws, coordinator, workers)
        slow.unlink()

        # Then the lost run's command was killed before the victim ran again
        assert _dies(first.pid), f"the lost execution (group {first.pid}) still runs"
        assert coordinator.wait() == 0, coordinator.stderr
        assert overlapping_runs(ws.markers()) == []
        # And each item of the batch ended once; only the victim lost an execution,
        # recorded as an interrupted attempt on the killed worker
        assert [ws.count("end", i["id"]) for i in items] == [1, 1, 1]
        assert ws.count("start", "a") == ws.count("start", "b") == 1
        victim = attempts_in_order(ws, "batch", "victim")
        assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
        assert killed in victim[0]["host"]
        others = [attempts_in_order(ws, "batch", i)[-1]["outcome"] for i in ("a", "b")]
        assert others == ["succeeded", "succeeded"]
    finally:
        slow.unlink(missing_ok=True)
