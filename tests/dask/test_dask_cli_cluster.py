"""A cluster started the way users start one: ``dask scheduler`` and two ``dask worker``
processes through their command line; a worker killed by its pid mid-run, and every
worker killed, then SIGINT.

The workers run without a nanny (``--no-nanny``), so each ``dask worker`` process is the
worker itself: the pid the test kills is the one it started, the command's ``$PPID``
names it, and nothing restarts it (the lost item must run on the other worker). Every
process the test started is ended in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from helpers.cluster import attempts_in_order
from helpers.jobs import (
    WAIT_SECONDS,
    Workspace,
    block_while,
    item_command,
    overlapping_runs,
    wait_until,
)
from helpers.processes import live_members

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

DASK = Path(sys.executable).parent / "dask"
ITEMS = [{"id": "victim"}, *({"id": f"i{n}"} for n in range(5))]


@dataclass(frozen=True)
class CliCluster:
    """A scheduler and its workers, each a ``dask`` process the test started."""

    address: str
    worker_pids: dict[str, int]  # worker address -> pid of its ``dask worker`` process
    client: Any  # a distributed.Client of the test's own


class Processes:
    """The processes a test started, with their output in files, ended by ``close``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.closers: list[Callable[[], object]] = []

    def on_close(self, closer: Callable[[], object]) -> None:
        """Call ``closer`` first when closing (a client before its scheduler goes)."""
        self.closers.append(closer)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [str(DASK), *args],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append((proc, log))
        return proc

    def close(self) -> None:
        """TERM each process still running (workers first), KILL it if it lingers."""
        for closer in self.closers:
            with contextlib.suppress(Exception):
                closer()
        for proc, log in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=WAIT_SECONDS)
            log.close()


def _scheduler_address(scheduler_file: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return str(json.loads(scheduler_file.read_text())["address"])
    return None


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[CliCluster]:
    from distributed import Client

    folder = tmp_path / "cluster"
    folder.mkdir()
    processes = Processes(folder)
    try:
        scheduler_file = folder / "scheduler.json"
        processes.start(
            "scheduler",
            *("scheduler", "--host", "127.0.0.1", "--port", "0"),
            *("--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)),
        )
        wait_until(lambda: _scheduler_address(scheduler_file) is not None, what="the scheduler")
        address = _scheduler_address(scheduler_file)
        assert address is not None
        for n in range(2):
            processes.start(
                f"worker-{n}",
                *("worker", address, "--nthreads", "2", "--no-dashboard", "--no-nanny"),
                *("--host", "127.0.0.1", "--name", f"w{n}"),
            )
        client = Client(address, timeout=WAIT_SECONDS, set_as_default=False)
        processes.on_close(client.close)
        client.wait_for_workers(2, timeout=WAIT_SECONDS)
        yield CliCluster(address, dict(client.run(os.getpid)), client)
    finally:
        processes.close()


# how the coordinator's calls reach the slots: straight to the workers (found reachable),
# or forwarded by the scheduler (the Dask configuration says so)
CALLS = {"direct": {}, "forwarded": {"DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS": "False"}}


@pytest.mark.parametrize("calls", sorted(CALLS))
def test_a_worker_killed_by_its_pid_mid_run_costs_only_its_item_which_runs_again(
    ws: Workspace, cli_cluster: CliCluster, calls: str
) -> None:
    # Given six items on the two workers; "victim" blocks while a flag exists
    slow = ws.flag("slow")
    slow.touch()
    body = f'sleep 0.2; [ "$MAPWISE_ITEM_ID" != victim ] || {block_while("SLOW")}'
    ws.write_workflow(
        [item_command(body, extra="$PPID")],
        items=ITEMS,
        env={"SLOW": str(slow)},
        max_parallel=4,
        retry={"max_attempts": 1},  # a lost execution counted as failed would park it
    )
    job = "cli-cluster"
    coordinator = ws.start(
        *("run", str(ws.workflow_path), "--job-id", job),
        *("--executor", "dask", "--scheduler", cli_cluster.address),
        env=CALLS[calls],
    )
    coordinator.wait_for(
        lambda: ws.count("start", "victim") == 1,
        what="the victim running",
    )
    (first,) = ws.starts(prefix="victim")
    (killed,) = [a for a, pid in cli_cluster.worker_pids.items() if pid == int(first.extra[0])]

    # When the worker running it is killed by its pid, as soon as the command started
    os.kill(cli_cluster.worker_pids[killed], signal.SIGKILL)

    # Then the item starts again on the other worker, and the job completes once it may end
    coordinator.wait_for(
        lambda: ws.count("start", "victim") == 2,
        what="the victim running again",
    )
    assert ws.count("start", "victim") == 2, (coordinator.wait(), coordinator.stderr)
    second = ws.starts(prefix="victim")[1]
    (survivor,) = set(cli_cluster.worker_pids) - {killed}
    assert int(second.extra[0]) == cli_cluster.worker_pids[survivor]
    # And the killed worker's command, which outlived it, was killed before the item's second
    # run started: the flag goes at once, and it never ends (checked below)
    slow.unlink()
    wait_until(lambda: not live_members({first.pid}), what="the lost execution killed", timeout=15)
    assert coordinator.wait() == 0, coordinator.stderr

    # And every item succeeded exactly once; the victim's lost execution (and that of any
    # item that shared its worker) is an interrupted attempt on the killed worker
    db = ws.db(job)
    assert set(db.statuses().values()) == {"succeeded"}
    attempts = db.attempts()
    succeeded = Counter(a["item_id"] for a in attempts if a["outcome"] == "succeeded")
    assert succeeded == {item["id"]: 1 for item in ITEMS}
    lost = [a for a in attempts if a["outcome"] != "succeeded"]
    assert {a["outcome"] for a in lost} == {"interrupted"}
    assert all(killed in a["host"] for a in lost)
    victim = attempts_in_order(ws, job, "victim")
    assert [a["outcome"] for a in victim] == ["interrupted", "succeeded"]
    assert survivor in victim[1]["host"]
    assert overlapping_runs([m for m in ws.markers() if m.name == "victim"]) == []
    assert ws.count("end", "victim") == 1


def test_sigint_stops_a_job_whose_workers_are_all_gone_and_resume_finishes_it(
    ws: Workspace, cli_cluster: CliCluster, dask_scheduler: str
) -> None:
    # Given two items running on a cluster whose workers nothing restarts
    slow = ws.flag("slow")
    slow.touch()
    items = [{"id": f"i{n}"} for n in range(4)]
    ws.write_workflow(
        [item_command(block_while("SLOW"))],
        items=items,
        env={"SLOW": str(slow)},
        max_parallel=2,
    )
    job = "no-workers"
    coordinator = ws.start(
        *("run", str(ws.workflow_path), "--job-id", job),
        *("--executor", "dask", "--scheduler", cli_cluster.address),
    )
    coordinator.wait_for(
        lambda: len(ws.starts()) == 2,
        what="two items running",
    )

    # When every worker is killed, so the items wait for a worker that never comes
    for pid in cli_cluster.worker_pids.values():
        os.kill(pid, signal.SIGKILL)

    def slots_waiting(dask_scheduler: Any) -> int:  # runs on the scheduler (by value)
        return sum(
            1
            for state in dask_scheduler.tasks.values()
            if str(state.key).startswith("mapwise-slot-") and state.state in ("no-worker", "queued")
        )

    coordinator.wait_for(
        lambda: cli_cluster.client.run_on_scheduler(slots_waiting) == 2,
        what="both items waiting for a new slot",
    )
    # And the coordinator gets SIGINT
    coordinator.send(signal.SIGINT)

    # Then it stops at once as interrupted, nothing recorded done
    assert coordinator.wait() == 130, coordinator.stderr
    assert "Traceback" not in coordinator.stderr
    db = ws.db(job)
    assert db.job()["status"] == "interrupted"
    assert set(db.statuses().values()) == {"pending"}

    # And a resume on another cluster kills what the lost runs left and finishes the job
    slow.unlink()
    resumed = ws.resume(job, "--scheduler", dask_scheduler)
    assert resumed.returncode == 0, resumed.stderr
    assert set(db.statuses().values()) == {"succeeded"}
    assert ws.live_commands() == []
