"""The Dask tests' helpers: the executor choice, a local cluster, a cluster whose workers
tests may kill, jobs run through the CLI.

``distributed`` is imported only when a cluster starts: ``tests/dask/conftest.py`` skips
the folder when it is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from helpers.jobs import WAIT_SECONDS, Coordinator, Done, Workspace

ALLOWED_FAILURES = 1  # an own cluster: a task that lost two workers fails with KilledWorker
OWN_WORKERS = ALLOWED_FAILURES + 2  # an own cluster: one lives on when a task killed two


def start_local_cluster(**options: Any) -> Any:
    """A LocalCluster of worker processes bound to 127.0.0.1, the dashboard on a free port.

    Its nannies set variables in this process's environment for the workers they spawn
    (``MALLOC_TRIM_THRESHOLD_``, ``PYTHONHASHSEED``, ``OMP_NUM_THREADS`` ...); they are
    taken back once the workers run, so the tests after it start their jobs without them.
    """
    from distributed import LocalCluster

    settings: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 2,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        **options,
    }
    before = dict(os.environ)
    try:
        return LocalCluster(**settings)
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        os.environ.update(before)


@dataclass(frozen=True)
class OwnCluster:
    """A LocalCluster of ``OWN_WORKERS`` (one thread each) that tests may kill workers of.

    Its scheduler gives up on an attempt after two lost workers (``allowed-failures: 1``,
    which mapwise reads from the scheduler), and it has three workers, so that one still
    runs on this machine when a task killed two: the lost runs' commands can only be
    killed through a worker on their machine. A killed worker's nanny starts another.
    """

    address: str
    client: Any  # distributed.Client
    scheduler: Any  # the cluster's distributed.Scheduler, in this process
    cluster: Any  # the distributed.LocalCluster

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of its process, once every worker is up."""
        self.client.wait_for_workers(OWN_WORKERS, timeout=WAIT_SECONDS)
        return dict(self.client.run(os.getpid))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.cluster.close()


def start_own_cluster() -> OwnCluster:
    """An :class:`OwnCluster` on 127.0.0.1, with a client of the test's own."""
    from distributed import Client

    cluster = start_local_cluster(
        n_workers=OWN_WORKERS,
        threads_per_worker=1,
        scheduler_kwargs={"allowed_failures": ALLOWED_FAILURES},
    )
    try:
        client = Client(cluster.scheduler_address, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return OwnCluster(str(cluster.scheduler_address), client, cluster.scheduler, cluster)


@dataclass(frozen=True)
class ExecutorChoice:
    """How a test asks for an executor: CLI arguments and API keyword arguments."""

    kind: str  # local | dask
    scheduler: str | None = None
    args: tuple[str, ...] = ()  # for ``mapwise run`` / ``resume``
    kwargs: dict[str, str] = field(default_factory=dict)  # for ``mapwise.run_workflow``


def mapwise_cli(ws: Workspace, *args: str) -> Done:
    """``python -m mapwise ARGS --state-dir STATE`` to its end (not quiet)."""
    done = subprocess.run(
        [sys.executable, "-m", "mapwise", *args, "--state-dir", str(ws.state_dir)],
        cwd=ws.root,
        env=ws.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS * 2,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def run_job(ws: Workspace, job: str, *args: str) -> Done:
    return mapwise_cli(ws, "run", str(ws.workflow_path), "--job-id", job, *args)


def start_job(ws: Workspace, job: str, *args: str) -> Coordinator:
    return ws.start("run", str(ws.workflow_path), "--job-id", job, *args)


def attempts_in_order(ws: Workspace, job: str, item_id: str) -> list[dict[str, Any]]:
    """An item's attempts in the order they started."""
    return ws.db(job).rows(
        "SELECT a.* FROM attempts a JOIN items i ON i.idx = a.item_idx"
        " WHERE i.item_id = ? ORDER BY a.started_at",
        (item_id,),
    )


def assert_ran_on(executor: ExecutorChoice, hosts: list[str]) -> None:
    """Attempts under Dask name their worker (``host (tcp://...)``); local ones do not."""
    on_workers = ["(tcp://127.0.0.1:" in host for host in hosts]
    assert on_workers == [executor.kind == "dask"] * len(hosts), hosts
